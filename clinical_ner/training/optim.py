"""Optimizer wiring shared by every task module: decay groups from a `_partial_` factory + the schedule."""

from __future__ import annotations

from collections.abc import Callable

import lightning as L
import torch

from clinical_ner.training.schedules import warmup_cosine


def decay_groups(model: torch.nn.Module, weight_decay: float | None) -> list[dict]:
    """Weight decay on matrices only; norms, biases and other 1-D parameters are exempt."""
    params = [p for p in model.parameters() if p.requires_grad]
    decay = [p for p in params if p.ndim >= 2]
    no_decay = [p for p in params if p.ndim < 2]
    groups = [{"params": decay}, {"params": no_decay, "weight_decay": 0.0}]
    if weight_decay is not None:
        groups[0]["weight_decay"] = weight_decay
    return [g for g in groups if g["params"]]


def configure(
    model: torch.nn.Module,
    optimizer_factory: Callable[..., torch.optim.Optimizer],
    lr: float,
    total_steps: int,
    warmup_ratio: float,
    min_lr_ratio: float,
) -> dict:
    """What a LightningModule's `configure_optimizers` returns: optimizer + per-step warmup-cosine."""
    optimizer = optimizer_factory(decay_groups(model, None), lr=lr)
    scheduler = warmup_cosine(optimizer, total_steps, warmup_ratio, min_lr_ratio)
    return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}


class ScheduledModule(L.LightningModule):
    """Base of every task module: holds `model` and builds its optimizer from a `_partial_` factory with a
    per-step warmup-cosine schedule, so no task names a concrete optimizer."""

    def __init__(
        self,
        model: torch.nn.Module,
        optimizer_factory: Callable[..., torch.optim.Optimizer],
        lr: float,
        warmup_ratio: float,
        min_lr_ratio: float,
    ) -> None:
        super().__init__()
        self.model = model
        self.optimizer_factory = optimizer_factory
        self.lr = lr
        self.warmup_ratio = warmup_ratio
        self.min_lr_ratio = min_lr_ratio

    def configure_optimizers(self) -> dict:
        return configure(
            self.model,
            self.optimizer_factory,
            self.lr,
            int(self.trainer.estimated_stepping_batches),
            self.warmup_ratio,
            self.min_lr_ratio,
        )

"""Optimizer wiring shared by every task module: decay groups from a `_partial_` factory + the schedule."""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import hydra
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


@dataclass(frozen=True)
class OptimSpec:
    """What a task module trains with: the optimizer's `_partial_` factory, the peak lr and the shape of the
    per-step warmup-cosine schedule."""

    factory: Callable[..., torch.optim.Optimizer]
    lr: float
    warmup_ratio: float
    min_lr_ratio: float

    @classmethod
    def from_config(cls, node: Any) -> OptimSpec:
        """From a config node with `optimizer` (a `_partial_` factory), `lr`, `warmup_ratio`, `min_lr_ratio`:
        `cfg.optim` (fine-tuning) or `cfg.pretrain` (continual pretraining)."""
        return cls(hydra.utils.instantiate(node.optimizer), node.lr, node.warmup_ratio, node.min_lr_ratio)


class ScheduledModule(L.LightningModule):
    """Base of every task module: holds `model` and builds its optimizer from a `_partial_` factory with a
    per-step warmup-cosine schedule, so no task names a concrete optimizer."""

    def __init__(self, model: torch.nn.Module, optim: OptimSpec) -> None:
        super().__init__()
        self.model = model
        self.optim = optim

    def configure_optimizers(self) -> dict:
        o = self.optim
        steps = int(self.trainer.estimated_stepping_batches)
        return configure(self.model, self.usable_factory(), o.lr, steps, o.warmup_ratio, o.min_lr_ratio)

    def usable_factory(self) -> Callable[..., torch.optim.Optimizer]:
        """The optimizer factory, less `fused` where Lightning would refuse it: under mixed precision with
        gradient clipping (a fused step unscales internally, so Lightning cannot clip before it). `precision:
        auto` picks fp32 on some CPUs (fused pays there) and bf16-mixed on others, with the same recipe."""
        factory = self.optim.factory
        keywords = getattr(factory, "keywords", {})
        mixed = str(self.trainer.precision).endswith("-mixed")
        if keywords.get("fused") and mixed and self.trainer.gradient_clip_val:
            return functools.partial(factory.func, *factory.args, **{**keywords, "fused": None})
        return factory

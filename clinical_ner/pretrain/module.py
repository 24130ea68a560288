"""LightningModule for continual causal-LM pretraining on packed blocks."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from clinical_ner.training.optim import OptimSpec, ScheduledModule


class CausalLMModule(ScheduledModule):
    """Next-token training of a `*ForCausalLM` on packed blocks, and perplexity on named evaluation sets.

    Labels are the input ids, unshifted: the Hugging Face causal-LM loss shifts them once internally, so that
    logits[t] is scored against input_ids[t + 1] (tests/unit/test_pretrain.py proves it on a periodic sequence).
    Blocks hold no padding, so no attention mask is passed and every position but the last is a target.
    """

    def __init__(
        self,
        model: torch.nn.Module,
        optim: OptimSpec,
        eval_names: Sequence[str] = ("val",),
    ) -> None:
        super().__init__(model, optim)
        self.eval_names = list(eval_names)
        self.flops_per_batch: int | None = None  # read by Lightning's ThroughputMonitor
        self.perplexities: dict[str, float] = {}  # of the last evaluation
        self.history: list[dict[str, float]] = []  # every evaluation in order (before training, each epoch)
        self._nll = [0.0] * len(self.eval_names)
        self._count = [0] * len(self.eval_names)

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        return self.model(input_ids=input_ids).logits

    def _loss(self, input_ids: torch.Tensor) -> torch.Tensor:
        # labels == input_ids on purpose: the model shifts them (never shift here too)
        return self.model(input_ids=input_ids, labels=input_ids).loss

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        input_ids = batch["input_ids"]
        loss = self._loss(input_ids)
        self.log("pretrain/loss", loss, prog_bar=True, batch_size=input_ids.shape[0])
        return loss

    def on_validation_epoch_start(self) -> None:
        self._nll = [0.0] * len(self.eval_names)
        self._count = [0] * len(self.eval_names)

    def validation_step(
        self, batch: dict[str, torch.Tensor], batch_idx: int, dataloader_idx: int = 0
    ) -> None:
        input_ids = batch["input_ids"]
        targets = input_ids.shape[0] * (input_ids.shape[1] - 1)  # the mean loss is over these positions
        self._nll[dataloader_idx] += float(self._loss(input_ids)) * targets
        self._count[dataloader_idx] += targets

    def on_validation_epoch_end(self) -> None:
        self.perplexities = {
            name: math.exp(nll / count)
            for name, nll, count in zip(self.eval_names, self._nll, self._count, strict=True)
            if count
        }
        self.history.append(dict(self.perplexities))
        for name, ppl in self.perplexities.items():
            self.log(f"pretrain/{name}_ppl", ppl, add_dataloader_idx=False)

"""LightningModule for token classification on a (bidirectional) Llama."""

from __future__ import annotations

from collections.abc import Callable

import torch

from clinical_ner.approaches.tokencls.inference import tags_by_window
from clinical_ner.training.checkpoints import TrainedOnlyCheckpoints
from clinical_ner.training.optim import OptimSpec, ScheduledModule


class TokenClsModule(TrainedOnlyCheckpoints, ScheduledModule):
    """Trains `model` (a `*ForTokenClassification`) and scores the dev set by the official span rule.

    `evaluate(predictions) -> metrics` turns {window index: tag ids} into span metrics; it is injected so the
    module knows nothing about documents or files.
    """

    def __init__(
        self,
        model: torch.nn.Module,
        optim: OptimSpec,
        evaluate: Callable[[dict[int, list[int]]], dict],
        pad_id: int,
        token_dropout: float = 0.0,
    ) -> None:
        super().__init__(model, optim)
        self.evaluate = evaluate
        self.pad_id = pad_id
        self.token_dropout = token_dropout
        self.train_tokens = 0  # real (unpadded) tokens seen, for tokens/s
        self._val_predictions: dict[int, list[int]] = {}
        self.last_val_metrics: dict = {}

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return self.model(input_ids=input_ids, attention_mask=attention_mask).logits

    def _drop_tokens(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        # word-dropout regulariser: the model must tag some tokens from context alone
        drop = (
            torch.rand(input_ids.shape, device=input_ids.device) < self.token_dropout
        ) & attention_mask.bool()
        drop[:, 0] = False  # keep BOS
        return input_ids.masked_fill(drop, self.pad_id)

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        input_ids = batch["input_ids"]
        if self.token_dropout > 0:
            input_ids = self._drop_tokens(input_ids, batch["attention_mask"])
        out = self.model(input_ids=input_ids, attention_mask=batch["attention_mask"], labels=batch["labels"])
        self.train_tokens += int(batch["attention_mask"].sum())
        self.log("train/loss", out.loss, prog_bar=True, batch_size=input_ids.shape[0])
        return out.loss

    def on_validation_epoch_start(self) -> None:
        self._val_predictions = {}

    def validation_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        logits = self(batch["input_ids"], batch["attention_mask"])
        self._val_predictions.update(tags_by_window(logits, batch))

    def on_validation_epoch_end(self) -> None:
        metrics = self.evaluate(self._val_predictions)
        self.last_val_metrics = metrics
        for key in ("precision", "recall", "f1", "seqeval_f1"):
            self.log(f"val/{key}", float(metrics[key]), prog_bar=key == "f1")

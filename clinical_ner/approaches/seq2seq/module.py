"""LightningModule for seq2seq NER: causal-LM fine-tuning with the loss on answer tokens only, selected on the
dev F1 of generated answers."""

from __future__ import annotations

from collections.abc import Callable

import torch

from clinical_ner.training.checkpoints import TrainedOnlyCheckpoints
from clinical_ner.training.optim import ScheduledModule


class Seq2SeqModule(TrainedOnlyCheckpoints, ScheduledModule):
    """Trains `model` (a `*ForCausalLM`, possibly with LoRA adapters) on prompt + answer examples.

    `answer(model, indices) -> answers` generates the dev units' answers and `evaluate({index: answer}) -> metrics`
    scores them; both are injected, so the module knows nothing about prompts, documents or files.
    """

    def __init__(
        self,
        model: torch.nn.Module,
        optimizer_factory: Callable[..., torch.optim.Optimizer],
        lr: float,
        warmup_ratio: float,
        min_lr_ratio: float,
        answer: Callable[[torch.nn.Module, list[int]], list[str]],
        evaluate: Callable[[dict[int, str]], dict],
    ) -> None:
        super().__init__(model, optimizer_factory, lr, warmup_ratio, min_lr_ratio)
        self.answer = answer
        self.evaluate = evaluate
        self._val_answers: dict[int, str] = {}
        self.last_val_metrics: dict = {}

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        # labels are -100 on the prompt and the padding: the loss is the answer's tokens only
        out = self.model(
            input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], labels=batch["labels"]
        )
        self.log("train/loss", out.loss, prog_bar=True, batch_size=batch["input_ids"].shape[0])
        return out.loss

    def on_validation_epoch_start(self) -> None:
        self._val_answers = {}

    def validation_step(self, batch: list[int], batch_idx: int) -> None:
        self._val_answers.update(zip(batch, self.answer(self.model, batch), strict=True))

    def on_validation_epoch_end(self) -> None:
        metrics = self.evaluate(self._val_answers)
        self.last_val_metrics = metrics
        for key in ("precision", "recall", "f1", "json_parse_rate"):
            self.log(f"val/{key}", float(metrics[key]), prog_bar=key == "f1")

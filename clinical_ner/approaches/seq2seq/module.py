"""LightningModule for seq2seq NER: causal-LM fine-tuning with the loss on answer tokens only, selected on the
dev F1 of generated answers."""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

from clinical_ner.approaches.seq2seq.prompt import IGNORE
from clinical_ner.training.checkpoints import TrainedOnlyCheckpoints
from clinical_ner.training.optim import OptimSpec, ScheduledModule


def answer_loss(model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """Mean next-token cross-entropy over the answer tokens (labels != -100), with the LM head applied to
    those positions only: prompts are ~3/4 of a seq2seq example's tokens, and a 49k-128k vocabulary head over
    them (logits, softmax and their gradients) is pure waste. Equals the model's own `labels=` loss."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model  # peft: adapters live inside
    hidden = base.model(
        input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]
    ).last_hidden_state
    targets = batch["labels"][:, 1:]  # position t predicts token t + 1
    learned = targets != IGNORE
    logits = base.lm_head(hidden[:, :-1][learned])
    return F.cross_entropy(logits.float(), targets[learned])


class Seq2SeqModule(TrainedOnlyCheckpoints, ScheduledModule):
    """Trains `model` (a `*ForCausalLM`, possibly with LoRA adapters) on prompt + answer examples.

    `answer(model, indices) -> answers` generates the dev units' answers and `evaluate({index: answer}) -> metrics`
    scores them; both are injected, so the module knows nothing about prompts, documents or files.
    """

    def __init__(
        self,
        model: torch.nn.Module,
        optim: OptimSpec,
        answer: Callable[[torch.nn.Module, list[int]], list[str]],
        evaluate: Callable[[dict[int, str]], dict],
        logged: tuple[str, ...] = ("json_parse_rate",),
    ) -> None:
        super().__init__(model, optim)
        self.answer = answer
        self.evaluate = evaluate
        self.logged = logged  # the answer format's validity metrics, logged beside P/R/F1
        self._val_answers: dict[int, str] = {}
        self.last_val_metrics: dict = {}

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        loss = answer_loss(self.model, batch)
        self.log("train/loss", loss, prog_bar=True, batch_size=batch["input_ids"].shape[0])
        return loss

    def on_validation_epoch_start(self) -> None:
        self._val_answers = {}

    def validation_step(self, batch: list[int], batch_idx: int) -> None:
        self._val_answers.update(zip(batch, self.answer(self.model, batch), strict=True))

    def on_validation_epoch_end(self) -> None:
        metrics = self.evaluate(self._val_answers)
        self.last_val_metrics = metrics
        for key in ("precision", "recall", "f1", *self.logged):
            self.log(f"val/{key}", float(metrics[key]), prog_bar=key == "f1")

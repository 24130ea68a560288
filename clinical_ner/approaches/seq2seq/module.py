"""LightningModule for seq2seq NER: causal-LM fine-tuning with the loss on answer tokens only, selected on the
dev F1 of generated answers."""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

from clinical_ner.approaches.seq2seq.prompt import IGNORE
from clinical_ner.training.checkpoints import TrainedOnlyCheckpoints
from clinical_ner.training.optim import OptimSpec, ScheduledModule


def shared_prefix_length(ids: torch.Tensor, mask: torch.Tensor) -> int:
    """Leading columns where every row of a right-padded batch holds the same real token (the chat template and
    instruction every prompt starts with), short of each row's last token so every row keeps one of its own."""
    same = ((ids == ids[:1]) & mask.bool()).all(0)
    return max(0, min(int(same.int().cumprod(0).sum()), int(mask.sum(1).min()) - 1))


def decoder_states(base: torch.nn.Module, ids: torch.Tensor, mask: torch.Tensor, shared: int) -> torch.Tensor:
    """The decoder's last hidden states of a batch; with `shared` > 0 the first `shared` tokens (identical in
    every row) go through the decoder once and their keys and values serve every row: causal attention makes
    them the same in each row, so the result is the same (up to float rounding) for 1/rows of their FLOPs, and
    their gradients are summed over the rows by autograd."""
    if not shared:
        return base.model(input_ids=ids, attention_mask=mask).last_hidden_state
    head = base.model(input_ids=ids[:1, :shared], use_cache=True)
    cache = head.cache
    cache.batch_repeat_interleave(ids.shape[0])
    tail = base.model(input_ids=ids[:, shared:], attention_mask=mask, cache=cache, use_cache=True)
    return torch.cat([head.last_hidden_state.expand(ids.shape[0], -1, -1), tail.last_hidden_state], 1)


def unwrap(model: torch.nn.Module) -> torch.nn.Module:
    """The `*ForCausalLM` itself (peft: adapters live inside it)."""
    return model.get_base_model() if hasattr(model, "get_base_model") else model


def shareable_prefix(model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> int:
    """`shared_prefix_length` of the batch, or 0 where sharing cannot work: one row, or gradient checkpointing
    (it drops the layers' cache in training, so the rest of the rows would not see the prefix)."""
    ids, base = batch["input_ids"], unwrap(model)
    checkpointing = getattr(base, "is_activation_checkpointing", None)  # transformers >= 5.20's name
    if checkpointing is None:
        checkpointing = getattr(base, "is_gradient_checkpointing", False)
    if ids.shape[0] < 2 or checkpointing:
        return 0
    return shared_prefix_length(ids, batch["attention_mask"])


def answer_loss(model: torch.nn.Module, batch: dict[str, torch.Tensor], shared: int = 0) -> torch.Tensor:
    """Mean next-token cross-entropy over the answer tokens (labels != -100), with the LM head applied to
    those positions only: prompts are ~3/4 of a seq2seq example's tokens, and a 49k-128k vocabulary head over
    them (logits, softmax and their gradients) is pure waste. Equals the model's own `labels=` loss.
    `shared`: leading tokens identical in every row, run once (`decoder_states`; `shareable_prefix`)."""
    base = unwrap(model)
    hidden = decoder_states(base, batch["input_ids"], batch["attention_mask"], shared)
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
        share_prefix: bool = False,
    ) -> None:
        super().__init__(model, optim)
        self.share_prefix = share_prefix
        self.shared_tokens = 0  # of the last training step: tokens the shared prefix kept out of the decoder
        self.answer = answer
        self.evaluate = evaluate
        self.logged = logged  # the answer format's validity metrics, logged beside P/R/F1
        self._val_answers: dict[int, str] = {}
        self.last_val_metrics: dict = {}

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        shared = shareable_prefix(self.model, batch) if self.share_prefix else 0
        self.shared_tokens = (batch["input_ids"].shape[0] - 1) * shared
        loss = answer_loss(self.model, batch, shared)
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

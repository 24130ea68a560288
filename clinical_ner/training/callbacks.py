"""Small Lightning callbacks no library provides in this form."""

from __future__ import annotations

import time
from pathlib import Path

import lightning as L
from lightning.pytorch.callbacks import TQDMProgressBar

from clinical_ner import progress


def progress_bars(setting: bool | None) -> tuple[bool, list[L.Callback]]:
    """(`enable_progress_bar`, callbacks) for a Trainer: Lightning's tqdm bar when `progress.wanted(setting)`
    (named explicitly: with rich installed Lightning would pick its rich bar, unlike every other bar here)."""
    shown = progress.wanted(setting)
    return shown, [TQDMProgressBar()] if shown else []


class TrainStepTimer(L.Callback):
    """Seconds spent inside training batches (validation excluded) and the real tokens they held.

    Padded batches count their attention mask; packed batches (no mask, no padding) count every position.
    """

    def __init__(self) -> None:
        self.seconds = 0.0
        self.tokens = 0
        self.steps = 0
        self._start = 0.0

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self._start = time.perf_counter()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.seconds += time.perf_counter() - self._start
        mask = batch.get("attention_mask")
        self.tokens += int(mask.sum()) if mask is not None else int(batch["input_ids"].numel())
        self.steps += 1

    @property
    def tokens_per_s(self) -> float:
        return self.tokens / self.seconds if self.seconds else 0.0


class EpochWeightsSaver(L.Callback):
    """`save_pretrained` of the module's `.model` (and tokenizer) into `<folder>/epoch-<n>/` after each epoch."""

    def __init__(self, folder: Path, tokenizer=None) -> None:
        self.folder = Path(folder)
        self.tokenizer = tokenizer
        self.saved: list[Path] = []

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        target = self.folder / f"epoch-{trainer.current_epoch + 1}"
        pl_module.model.save_pretrained(target)
        if self.tokenizer is not None:
            self.tokenizer.save_pretrained(target)
        self.saved.append(target)

"""Small Lightning callbacks no library provides in this form."""

from __future__ import annotations

import time
from pathlib import Path

import lightning as L
import torch
from lightning.pytorch.callbacks import Checkpoint, TQDMProgressBar

from clinical_ner import progress


def progress_bars(setting: bool | None) -> tuple[bool, list[L.Callback]]:
    """(`enable_progress_bar`, callbacks) for a Trainer: Lightning's tqdm bar when `progress.wanted(setting)`
    (named explicitly: with rich installed Lightning would pick its rich bar, unlike every other bar here)."""
    shown = progress.wanted(setting)
    return shown, [TQDMProgressBar()] if shown else []


class TrainStepTimer(L.Callback):
    """Seconds spent inside training batches (validation excluded) and the real tokens they held.

    Padded batches count their attention mask; packed batches (no mask, no padding) count every position.
    `steady_*` leave out the first `warmup_steps` batches (kernel selection, allocator growth, first casts).
    """

    def __init__(self, warmup_steps: int = 5) -> None:
        self.seconds = 0.0
        self.tokens = 0
        self.steps = 0
        self.warmup_steps = warmup_steps
        self.steady_seconds = 0.0
        self.steady_tokens = 0
        self._start = 0.0

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self._start = time.perf_counter()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        seconds = time.perf_counter() - self._start
        mask = batch.get("attention_mask")
        tokens = int(mask.sum()) if mask is not None else int(batch["input_ids"].numel())
        self.seconds += seconds
        self.tokens += tokens
        if self.steps >= self.warmup_steps:
            self.steady_seconds += seconds
            self.steady_tokens += tokens
        self.steps += 1

    @property
    def tokens_per_s(self) -> float:
        return self.tokens / self.seconds if self.seconds else 0.0

    @property
    def steady_tokens_per_s(self) -> float | None:
        """Tokens/s after the warm-up steps (None when training ended within them)."""
        return self.steady_tokens / self.steady_seconds if self.steady_seconds else None


class BatchSamplerEpoch(L.Callback):
    """A new, seeded batch order every epoch: Lightning passes the epoch to samplers (`set_epoch`) but not to
    batch samplers such as data/batching.py's. A resumed run created its first pass before the checkpoint's
    epoch was known (`estimated_stepping_batches` sets the data up early), so that pass is made again."""

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        sampler = getattr(trainer.train_dataloader, "batch_sampler", None)
        if not hasattr(sampler, "iterated_epoch"):
            return
        sampler.set_epoch(trainer.current_epoch)
        loop = trainer.fit_loop
        # what Lightning's epoch loop checks before it makes a new pass itself (training_epoch_loop.on_run_start)
        lightning_iterates = (
            trainer.current_epoch > 0 and not loop.is_resuming and not loop.epoch_loop.restarting
        )
        stale = sampler.iterated_epoch is not None and sampler.iterated_epoch != trainer.current_epoch
        done = loop.epoch_loop.batch_progress.current.ready  # a resume at an epoch's end still counts it
        if stale and not lightning_iterates and done in (0, trainer.num_training_batches):
            # no public way to make the pass again (Lightning 2.6); a DataLoader pass draws its base seed from
            # the global RNG, which the stale pass already did: keep the dropout stream of an uninterrupted run
            with torch.random.fork_rng(devices=[]):
                iter(loop._data_fetcher)


class LastCheckpoint(Checkpoint):
    """`last.ckpt` (what a run resumes from) after every training epoch. ModelCheckpoint's `save_last` rewrites
    it only when the best checkpoint changes, so a run killed after an epoch without a dev-F1 gain resumed from an
    older epoch and trained it again. A `Checkpoint`, so Lightning calls it after the best-checkpoint callback:
    the saved callback states hold this epoch's best score."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.saved = False

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.save(trainer)  # after the epoch's validation, where ModelCheckpoint saves too

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not self.saved:  # training ended before any validation: its final state
            self.save(trainer)

    def save(self, trainer: L.Trainer) -> None:
        # with optimizer and loop states: what a resume needs. Every rank calls it: sharded states are gathered
        trainer.save_checkpoint(self.path, weights_only=False)
        self.saved = True


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

"""Small Lightning callbacks no library provides in this form."""

from __future__ import annotations

import logging
import math
import time
from pathlib import Path

import lightning as L
import torch
from lightning.pytorch.callbacks import Checkpoint, TQDMProgressBar
from tqdm import tqdm

from clinical_ner.console import progress
from clinical_ner.errors import UserError
from clinical_ner.models import quantize

log = logging.getLogger(__name__)
format_interval = tqdm.format_interval  # the clock text the bars show (1:02:05)


def progress_bars(setting: bool | None) -> tuple[bool, list[L.Callback]]:
    """(`enable_progress_bar`, callbacks) for a Trainer: Lightning's tqdm bar when `progress.wanted(setting)`
    (named explicitly: with rich installed Lightning would pick its rich bar, unlike every other bar here),
    else a log line every few minutes (`ProgressLines`)."""
    shown = progress.wanted(setting)
    return shown, [TQDMProgressBar() if shown else ProgressLines()]


class ProgressLines(L.Callback):
    """Where no bar is drawn (sweeps, SLURM, log files): one log line every `every` seconds of training with
    the optimizer step, its share of the fit and the time left at this process's pace (rank 0 only)."""

    def __init__(self, every: float | None = None) -> None:
        self.every = progress.LOG_EVERY_SECONDS if every is None else every
        self._start = self._last = 0.0
        self._first_step = 0

    def on_train_start(self, trainer, pl_module) -> None:
        self._start = self._last = time.monotonic()
        self._first_step = trainer.global_step  # a resumed fit: its pace counts from here

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        now = time.monotonic()
        if now - self._last < self.every or not trainer.is_global_zero:
            return
        self._last = now
        step, total = trainer.global_step, trainer.estimated_stepping_batches
        pace = (step - self._first_step) / (now - self._start)  # optimizer steps per second
        share = left = ""
        if math.isfinite(total) and total > 0:
            share = f" of {int(total)} ({step / total:.0%})"
            left = f", about {format_interval((total - step) / pace)} left" if pace > 0 else ""
        log.info(
            "fit: step %d%s, epoch %d, %s so far%s",
            step, share, trainer.current_epoch, format_interval(now - self._start), left,
        )  # fmt: skip


class TrainStepTimer(L.Callback):
    """Seconds spent inside training batches (validation excluded) and the real tokens they held.

    Padded batches count their attention mask; packed batches (no mask, no padding) count every position.
    The counts, and the fit's wall time so far (`earlier_wall`), travel in the checkpoint, so a resumed run
    reports its whole training, not only the part after the resume. `steady_*` leave out the first
    `warmup_steps` batches of this process (kernel selection, allocator growth, first casts).
    """

    def __init__(self, warmup_steps: int = 5) -> None:
        self.seconds = 0.0
        self.tokens = 0  # this rank's
        self.shared_tokens = 0  # this rank's tokens a shared prompt prefix kept out of the decoder (seq2seq)
        self.steps = 0
        self.job_tokens: int | None = None  # the sum over ranks, once training ended (TokensAcrossRanks)
        self.earlier_wall = 0.0  # wall seconds of fit before this process resumed it
        self.validations = 0  # dev validations during fit (sanity checks excluded): 1 selects nothing
        self.warmup_steps = warmup_steps
        self._process_steps = 0  # steps of this process: a resumed run warms up again
        self.steady_seconds = 0.0
        self.steady_tokens = 0
        self._start = 0.0
        self._fit_start: float | None = None

    def on_fit_start(self, trainer, pl_module) -> None:
        self._fit_start = time.perf_counter()

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self._start = time.perf_counter()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        seconds = time.perf_counter() - self._start
        mask = batch.get("attention_mask")
        tokens = int(mask.sum()) if mask is not None else int(batch["input_ids"].numel())
        self.seconds += seconds
        self.tokens += tokens
        self.shared_tokens += getattr(pl_module, "shared_tokens", 0)
        if self._process_steps >= self.warmup_steps:
            self.steady_seconds += seconds
            self.steady_tokens += tokens
        self.steps += 1
        self._process_steps += 1

    def on_validation_end(self, trainer, pl_module) -> None:
        if not trainer.sanity_checking:
            self.validations += 1

    def wall_seconds(self) -> float:
        """The fit's wall seconds so far, earlier attempts included."""
        running = time.perf_counter() - self._fit_start if self._fit_start is not None else 0.0
        return self.earlier_wall + running

    def state_dict(self) -> dict:
        # saved with every checkpoint (rank 0's counts: the sum over ranks is taken again at the end)
        return {
            "seconds": self.seconds,
            "tokens": self.tokens,
            "shared_tokens": self.shared_tokens,
            "steps": self.steps,
            "wall": self.wall_seconds(),
        }

    def load_state_dict(self, state_dict: dict) -> None:
        self.seconds = float(state_dict.get("seconds", 0.0))
        self.tokens = int(state_dict.get("tokens", 0))
        self.shared_tokens = int(state_dict.get("shared_tokens", 0))
        self.steps = int(state_dict.get("steps", 0))
        self.earlier_wall = float(state_dict.get("wall", 0.0))
        self.validations = int(state_dict.get("validations", 0))

    @property
    def total_tokens(self) -> int:
        """Tokens of the whole job: the sum over ranks once known, else this rank's."""
        return self.tokens if self.job_tokens is None else self.job_tokens

    @property
    def decoder_share(self) -> float:
        """The share of the batches' real tokens that went through the decoder (1.0 unless a prompt prefix
        shared by a batch's rows ran once for all of them)."""
        return 1.0 - self.shared_tokens / self.tokens if self.tokens else 1.0

    @property
    def tokens_per_s(self) -> float:
        return self.total_tokens / self.seconds if self.seconds else 0.0

    @property
    def steady_tokens_per_s(self) -> float | None:
        """Tokens/s after the warm-up steps (None when training ended within them)."""
        return self.steady_tokens / self.steady_seconds if self.steady_seconds else None


class EpochLine(L.Callback):
    """One log line per training epoch: mean train loss, the epoch's validation metric, minutes since the fit
    started (`epoch 3/15: train loss 0.4123, dev F1 0.7012, 4.2 min`), so a run without a progress bar (nohup,
    a sweep, CI) says where it is. `metric` is the logged validation key, `label` its name in the line."""

    def __init__(self, metric: str = "val/f1", label: str = "dev F1", stage: str = "epoch") -> None:
        self.metric, self.label, self.stage = metric, label, stage
        self._start = time.perf_counter()
        self._loss, self._batches = 0.0, 0
        self._validated: float | None = None

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._start = time.perf_counter()

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._loss, self._batches, self._validated = 0.0, 0, None

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        loss = outputs.get("loss") if isinstance(outputs, dict) else outputs
        if isinstance(loss, torch.Tensor):
            # Lightning hands over the loss divided by the accumulation steps (what backward saw): undo it
            self._loss += float(loss.detach()) * trainer.accumulate_grad_batches
            self._batches += 1

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        value = trainer.callback_metrics.get(self.metric)
        if not trainer.sanity_checking and value is not None:
            self._validated = float(value)

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.is_global_zero:
            log.info("%s", self.line(trainer.current_epoch, trainer.max_epochs))

    def line(self, epoch: int, max_epochs: int | None) -> str:
        """The log line of 0-based `epoch` (of `max_epochs`, when positive)."""
        of = f"/{max_epochs}" if max_epochs and max_epochs > 0 else ""
        loss = f"{self._loss / self._batches:.4f}" if self._batches else "-"
        metric = f"{self._validated:.4f}" if self._validated is not None else "not validated"
        minutes = (time.perf_counter() - self._start) / 60
        return f"{self.stage} {epoch + 1}{of}: train loss {loss}, {self.label} {metric}, {minutes:.1f} min"


class BatchSamplerEpoch(L.Callback):
    """A new, seeded batch order every epoch: Lightning passes the epoch to samplers (`set_epoch`) but not to
    batch samplers such as data/batching.py's. A resumed run created its first pass before the checkpoint's
    epoch was known (`estimated_stepping_batches` sets the data up early), so that pass is made again; a run
    resumed mid-epoch (a `max_steps` stop: LastCheckpoint) makes it without the batches already trained on."""

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # Lightning calls no on_train_epoch_start for the epoch a mid-epoch restart continues
        sampler = getattr(trainer.train_dataloader, "batch_sampler", None)
        loop = trainer.fit_loop
        if not hasattr(sampler, "skip_next") or not loop.restarted_mid_epoch:
            return
        sampler.set_epoch(trainer.current_epoch)
        sampler.skip_next(loop.epoch_loop.batch_progress.current.ready)
        _new_pass(loop)

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
            _new_pass(loop)


def _new_pass(loop) -> None:
    """Make the training data fetcher's pass again (no public way in Lightning 2.6). A DataLoader pass draws its
    base seed from the global RNG, which the stale pass already did: keep the dropout stream of an uninterrupted
    run."""
    with torch.random.fork_rng(devices=[]):
        iter(loop._data_fetcher)


class LastCheckpoint(Checkpoint):
    """`last.ckpt` (what a run resumes from) after every training epoch. ModelCheckpoint's `save_last` rewrites
    it only when the best checkpoint changes, so a run killed after an epoch without a dev-F1 gain resumed from an
    older epoch and trained it again. A `Checkpoint`, so Lightning calls it after the best-checkpoint callback:
    the saved callback states hold this epoch's best score."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.saved_step: int | None = None  # the global step of the last save

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # after the epoch's validation, where ModelCheckpoint saves too. Lightning also ends an epoch when
        # max_steps stops it midway: that checkpoint must resume mid-epoch, not as if the epoch were done
        done = trainer.fit_loop.epoch_loop.batch_progress.current.ready
        self._mid_epoch = done < trainer.num_training_batches != float("inf")
        try:
            self.save(trainer)
        finally:
            self._mid_epoch = False

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.saved_step != trainer.global_step:  # training ended before any epoch end
            self.save(trainer)

    def on_save_checkpoint(self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict) -> None:
        if not getattr(self, "_mid_epoch", False):
            return
        # the epoch is marked processed, not completed: Lightning reads that as "ended on the epoch's end".
        # Unprocessed is its own state for a restart mid-epoch (fit_loop.update_restart_stage)
        progress = checkpoint["loops"]["fit_loop"]["epoch_progress"]
        for counts in (progress["total"], progress["current"]):
            counts["processed"] = counts["completed"] = counts["started"] - 1

    def save(self, trainer: L.Trainer) -> None:
        # with optimizer and loop states: what a resume needs. Every rank calls it: sharded states are gathered
        trainer.save_checkpoint(self.path, weights_only=False)
        self.saved_step = trainer.global_step


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


class TokensAcrossRanks(L.Callback):
    """At the end of training, the step timer's token count becomes the sum over ranks (each rank only sees
    its share of every batch), so tokens/s is the job's throughput."""

    def __init__(self, timer: TrainStepTimer) -> None:
        self.timer = timer

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.world_size > 1:
            local = torch.tensor(self.timer.tokens, dtype=torch.int64, device=pl_module.device)
            self.timer.job_tokens = int(trainer.strategy.reduce(local, reduce_op="sum").item())
            steady = torch.tensor(self.timer.steady_tokens, dtype=torch.int64, device=pl_module.device)
            self.timer.steady_tokens = int(trainer.strategy.reduce(steady, reduce_op="sum").item())


class QuantizationCheck(L.Callback):
    """Fails the fit when the model's weights are not stored as `quantization` asks (a stage that forgot to
    pass `cfg.quantization` to the backbone would otherwise train in bf16 silently)."""

    def __init__(self, expected: bool) -> None:
        self.expected = expected

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        found = quantize.is_quantized(pl_module.model)
        if found != self.expected:
            raise UserError(
                f"quantization={'nf4' if self.expected else 'none'} but the model's weights are "
                f"{'4-bit' if found else 'not quantized'}: the stage did not pass cfg.quantization to the backbone"
            )

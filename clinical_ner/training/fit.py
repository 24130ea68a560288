"""Fit a fine-tuning stage and select its weights: the callbacks and Trainer of `trainer.*`, the fit, the best
dev-F1 weights put back, and the `train` and `selection` sections of results.json.

Several devices (clinical_ner/distributed/): every rank runs the stage; the training sampler shards the
batches itself (Lightning's sampler injection is off), validation runs in full on every rank; after training,
ranks > 0 leave the stage: rank 0 alone predicts dev and test, scores and writes the model.
"""

from __future__ import annotations

import logging
import resource
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import EarlyStopping, LearningRateMonitor, ModelCheckpoint

from clinical_ner.config import TrainConfig
from clinical_ner.errors import UserError
from clinical_ner.models import quantize
from clinical_ner.run.record.folder import BEST_CHECKPOINT, RunFolder
from clinical_ner.training.best_weights import load_best
from clinical_ner.training.callbacks import (
    BatchSamplerEpoch,
    EpochLine,
    LastCheckpoint,
    QuantizationCheck,
    TokensAcrossRanks,
    TrainStepTimer,
    progress_bars,
)
from clinical_ner.training.timings import phase
from clinical_ner.training.trainer import make_trainer

log = logging.getLogger(__name__)


def peak_memory_mb() -> float:
    """Peak GPU memory allocated when on CUDA, else the process's peak resident set size."""
    if torch.cuda.is_available() and torch.cuda.max_memory_allocated() > 0:
        return torch.cuda.max_memory_allocated() / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


def make_callbacks(
    cfg: TrainConfig, run_dir: Path
) -> tuple[list[L.Callback], ModelCheckpoint, TrainStepTimer]:
    """Best-on-dev-F1 checkpoint, step timer, LR monitor, progress bar and early stopping as configured."""
    checkpoint = ModelCheckpoint(
        dirpath=RunFolder(run_dir).checkpoints,
        filename=BEST_CHECKPOINT,
        monitor="val/f1",
        mode="max",
        save_last=False,  # LastCheckpoint: after every epoch, not only when the best one changes
        save_top_k=1,
        save_weights_only=True,  # only load_best reads it; resuming uses last.ckpt (SmolLM2 full FT: 0.5 vs 1.6 GB)
    )
    timer = TrainStepTimer()
    callbacks: list[L.Callback] = [
        checkpoint,
        timer,
        TokensAcrossRanks(timer),
        BatchSamplerEpoch(),
        EpochLine(),
    ]
    if not cfg.trainer.fast_dev_run:  # a fast dev run saves nothing
        callbacks.append(LastCheckpoint(RunFolder(run_dir).last_checkpoint))
    callbacks.append(QuantizationCheck(quantize.enabled(cfg.quantization)))
    if cfg.logger.name != "none":
        callbacks.append(LearningRateMonitor(logging_interval="step"))
    callbacks += progress_bars(cfg.trainer.enable_progress_bar)[1]
    if cfg.trainer.early_stopping_patience:
        # checked after each validation only: a run that ends (max_steps) before its first validation has no
        # val/f1 at the end of its training epoch, and Lightning's default check there would crash it
        callbacks.append(
            EarlyStopping(
                "val/f1",
                mode="max",
                patience=cfg.trainer.early_stopping_patience,
                check_on_train_epoch_end=False,
            )
        )
    return callbacks, checkpoint, timer


def finetune_trainer(cfg: TrainConfig, run_dir: Path, callbacks: list[L.Callback], logger: Any) -> L.Trainer:
    """The Lightning Trainer of `cfg.trainer` for fine-tuning."""
    # the length-grouped sampler shards training batches by rank itself, and evaluation must see every
    # window on every rank; Lightning's DistributedSampler injection would break both
    return make_trainer(cfg.trainer, run_dir, callbacks, logger, use_distributed_sampler=False)


@dataclass
class Fit:
    """What fitting left behind: the trainer and logger, the best-checkpoint callback, the step timer."""

    trainer: L.Trainer
    logger: Any
    checkpoint: ModelCheckpoint
    timer: TrainStepTimer
    seconds: float
    best_epoch: int | None
    selection_f1: float | None = None  # dev-selection F1 of the weights kept

    def selection_section(self, documents: int) -> dict:
        """The `selection` section of results.json: the dev F1 the kept weights were chosen on (`documents`
        dev documents; null when nothing was validated), their epoch (null: the final weights) and how many
        validations competed (`validations`: with 1, e.g. one epoch, nothing was selected)."""
        validations = self.timer.validations
        return {
            "f1": self.selection_f1,
            "documents": documents,
            "epoch": self.best_epoch,
            "validations": validations,
        }

    def predicts_here(self) -> bool:
        """True on rank 0, which alone predicts, scores and saves after training (no collective follows); the
        other ranks say so in their log and leave the stage."""
        if self.trainer.is_global_zero:
            return True
        log.info("rank %d: training done; rank 0 predicts, scores and saves", self.trainer.global_rank)
        return False

    def train_section(self, parameters: tuple[int, int]) -> dict:
        """The `train` section of results.json; `parameters` is (trainable, total)."""
        return {
            "seconds": self.seconds,
            "tokens": self.timer.total_tokens,
            "tokens_per_s": self.timer.tokens_per_s,
            "tokens_per_s_steady": self.timer.steady_tokens_per_s,
            "decoder_token_share": self.timer.decoder_share,
            "steps": self.trainer.global_step,
            "epochs": self.trainer.current_epoch,
            "devices": self.trainer.world_size,
            "best_epoch": self.best_epoch,
            "best_checkpoint": self.checkpoint.best_model_path or None,
            "peak_memory_mb": peak_memory_mb(),
            "parameters": parameters[1],
            "trainable_parameters": parameters[0],
        }


def fit_and_select(
    cfg: TrainConfig, run_dir: Path, module: L.LightningModule, data: L.LightningDataModule, logger=None
) -> Fit:
    """Fit `module` with the configured trainer and callbacks, logging to the cell's `logger` (resuming from
    `cfg.ckpt_path`; the caller finishes its run, as failed if fitting raises), then put the best dev-F1
    weights back (the final weights, scored, when no validation ran: phases `fit` and `select`). A training split without a single
    batch is a UserError: Lightning would skip training and the untrained model would be scored as if it had
    been trained."""
    if len(data.train_dataloader()) == 0:
        raise UserError("nothing to train on: the training split gives no batch (see data.train_limit)")
    callbacks, checkpoint, timer = make_callbacks(cfg, run_dir)
    trainer = finetune_trainer(cfg, run_dir, callbacks, logger)
    with phase("fit") as fit:
        trainer.fit(module, datamodule=data, ckpt_path=cfg.ckpt_path)
    with phase("select"):
        score = checkpoint.best_model_score
        if score is None and trainer.global_step > 0:
            # training ended (max_steps) before its first validation: score the final weights, which are kept
            trainer.validate(module, datamodule=data, verbose=False)
            score = trainer.callback_metrics.get("val/f1")
        best_epoch = load_best(module, checkpoint, RunFolder(run_dir).last_checkpoint)
    # a resumed fit adds the wall time its checkpoint recorded (0 when it started from scratch)
    seconds = fit.seconds + timer.earlier_wall
    return Fit(trainer, logger, checkpoint, timer, seconds, best_epoch, _number(score))


def _number(value) -> float | None:
    """A logged metric (tensor or float) as a float; None when absent."""
    return None if value is None else float(value)

"""What every fine-tuning stage shares: callbacks, the Trainer, best-checkpoint reload, saving, result sections."""

from __future__ import annotations

from pathlib import Path

import lightning as L
import torch
from lightning.pytorch.callbacks import EarlyStopping, LearningRateMonitor, ModelCheckpoint, RichProgressBar

from clinical_ner.callbacks import TrainStepTimer
from clinical_ner.config import TrainConfig
from clinical_ner.io_utils import atomic_write_json
from clinical_ner.results import peak_memory_mb

MODEL_DIR = "model"
INFERENCE_FILE = "clinical_ner.json"  # decoding settings saved beside the weights
PREDICTIONS_DIR = "predictions"


def make_callbacks(
    cfg: TrainConfig, run_dir: Path
) -> tuple[list[L.Callback], ModelCheckpoint, TrainStepTimer]:
    """Best-on-dev-F1 checkpoint, step timer, LR monitor, progress bar and early stopping as configured."""
    checkpoint = ModelCheckpoint(
        dirpath=run_dir / "checkpoints",
        filename="best-{epoch:02d}",
        monitor="val/f1",
        mode="max",
        save_last=True,
        save_top_k=1,
    )
    timer = TrainStepTimer()
    callbacks: list[L.Callback] = [checkpoint, timer]
    if cfg.logger.name != "none":
        callbacks.append(LearningRateMonitor(logging_interval="step"))
    if cfg.trainer.enable_progress_bar:
        callbacks.append(RichProgressBar())
    if cfg.trainer.early_stopping_patience:
        callbacks.append(EarlyStopping("val/f1", mode="max", patience=cfg.trainer.early_stopping_patience))
    return callbacks, checkpoint, timer


def make_trainer(cfg: TrainConfig, run_dir: Path, callbacks: list[L.Callback], logger) -> L.Trainer:
    """The Lightning Trainer of `cfg.trainer`."""
    t = cfg.trainer
    return L.Trainer(
        accelerator=t.accelerator,
        devices=t.devices,
        strategy=t.strategy,
        precision=t.precision,
        max_epochs=t.max_epochs,
        max_steps=t.max_steps,
        accumulate_grad_batches=t.accumulate_grad_batches,
        gradient_clip_val=t.gradient_clip_val,
        val_check_interval=t.val_check_interval,
        check_val_every_n_epoch=t.check_val_every_n_epoch,
        log_every_n_steps=t.log_every_n_steps,
        deterministic=t.deterministic,
        num_sanity_val_steps=t.num_sanity_val_steps,
        enable_progress_bar=t.enable_progress_bar,
        default_root_dir=str(run_dir),
        callbacks=callbacks,
        logger=logger if logger is not None else False,
    )


def load_best(module: L.LightningModule, checkpoint: ModelCheckpoint) -> int | None:
    """Put the best dev-F1 weights back into the module; returns the best epoch if known."""
    path = checkpoint.best_model_path
    if not path:
        return None
    state = torch.load(path, map_location="cpu", weights_only=True)
    module.load_state_dict(state["state_dict"])
    return int(state.get("epoch", -1))


def save_model(model, tokenizer, folder: Path, settings: dict) -> None:
    """`save_pretrained` (safetensors) + tokenizer + inference settings; LoRA adapters are merged so plain
    transformers loads it."""
    model = getattr(model, "_orig_mod", model)  # unwrap torch.compile
    if hasattr(model, "merge_and_unload"):
        model = model.merge_and_unload()
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    atomic_write_json(folder / INFERENCE_FILE, settings)


def inference_section(documents: int, seconds: float) -> dict:
    """The `inference` section of results.json (test prediction and decoding)."""
    return {
        "documents": documents,
        "seconds": seconds,
        "documents_per_s": documents / seconds if seconds else 0.0,
    }


def train_section(
    trainer: L.Trainer,
    timer: TrainStepTimer,
    checkpoint: ModelCheckpoint,
    fit_seconds: float,
    best_epoch: int | None,
    parameters: tuple[int, int],
) -> dict:
    """The `train` section of results.json; `parameters` is (trainable, total)."""
    return {
        "seconds": fit_seconds,
        "tokens": timer.tokens,
        "tokens_per_s": timer.tokens_per_s,
        "steps": trainer.global_step,
        "epochs": trainer.current_epoch,
        "best_epoch": best_epoch,
        "best_checkpoint": checkpoint.best_model_path or None,
        "peak_memory_mb": peak_memory_mb(),
        "parameters": parameters[1],
        "trainable_parameters": parameters[0],
    }


def log_final(logger, sections: dict) -> None:
    """Dev and test P/R/F1 to the experiment logger."""
    if logger is not None:
        logger.log_metrics(
            {
                f"{split}/{key}": float(sections[split][key])
                for split in ("dev", "test")
                for key in ("precision", "recall", "f1")
            }
        )

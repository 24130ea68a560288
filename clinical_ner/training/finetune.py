"""What every fine-tuning stage shares: callbacks, the Trainer (and its DDP/FSDP strategy), best-checkpoint
reload, saving, result sections.

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
from clinical_ner.console import progress
from clinical_ner.errors import UserError
from clinical_ner.models import quantize
from clinical_ner.models.backbone import is_bidirectional, set_attention_direction
from clinical_ner.run.record.folder import BEST_CHECKPOINT, RunFolder
from clinical_ner.training.callbacks import (
    BatchSamplerEpoch,
    EpochLine,
    LastCheckpoint,
    TrainStepTimer,
    progress_bars,
)
from clinical_ner.training.checkpoints import load_trained
from clinical_ner.training.inference_settings import InferenceSettings, write_inference_settings
from clinical_ner.training.rank_zero import is_global_zero
from clinical_ner.training.timings import phase

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


def make_strategy(name: str, sharding_strategy: str = "FULL_SHARD", activation_checkpointing: bool = True):
    """A Trainer `strategy`: `fsdp` shards each LlamaDecoderLayer (and checkpoints its activations), saving
    full consolidated checkpoints; any other name goes to Lightning as it is (auto, ddp)."""
    if name != "fsdp":
        return name
    from lightning.pytorch.strategies import FSDPStrategy
    from transformers.models.llama.modeling_llama import LlamaDecoderLayer

    return FSDPStrategy(
        auto_wrap_policy={LlamaDecoderLayer},
        activation_checkpointing_policy={LlamaDecoderLayer} if activation_checkpointing else None,
        sharding_strategy=sharding_strategy,
        state_dict_type="full",  # one file the best-checkpoint reload and save_pretrained can read
    )


def make_trainer(cfg: TrainConfig, run_dir: Path, callbacks: list[L.Callback], logger) -> L.Trainer:
    """The Lightning Trainer of `cfg.trainer`."""
    t = cfg.trainer
    return L.Trainer(
        accelerator=t.accelerator,
        devices=t.devices,
        strategy=make_strategy(t.strategy, t.sharding_strategy, t.activation_checkpointing),
        # the length-grouped sampler shards training batches by rank itself, and evaluation must see every
        # window on every rank; Lightning's DistributedSampler injection would break both
        use_distributed_sampler=False,
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
        fast_dev_run=t.fast_dev_run,
        enable_progress_bar=progress.wanted(t.enable_progress_bar),
        default_root_dir=str(run_dir),
        callbacks=callbacks,
        logger=logger if logger is not None else False,
    )


def _fsdp_device(module: L.LightningModule) -> torch.device | None:
    """The rank's device when the module was trained under FSDP (its layers are then sharded), else None."""
    from lightning.pytorch.strategies import FSDPStrategy

    try:
        strategy = module.trainer.strategy
    except RuntimeError:  # not attached to a Trainer
        return None
    return strategy.root_device if isinstance(strategy, FSDPStrategy) else None


def unsharded_copy(model: torch.nn.Module, state_dict: dict, device: torch.device) -> torch.nn.Module:
    """A plain (unwrapped) copy of a transformers model holding `state_dict`, on `device`: after FSDP the
    trained model's layers stay sharded wrappers that only run in step with every rank inside the Trainer."""
    model = getattr(model, "_orig_mod", model)
    dtype = next(v.dtype for v in state_dict.values() if v.is_floating_point())
    with torch.device(device):
        fresh = type(model)._from_config(model.config, dtype=dtype)
    fresh.load_state_dict(state_dict)
    set_attention_direction(fresh, is_bidirectional(fresh))
    return fresh.train(model.training)


def load_best(module: L.LightningModule, checkpoint: ModelCheckpoint, last: Path) -> int | None:
    """Put the best dev-F1 weights back into the module; returns the best epoch if known. After FSDP the
    module's model is replaced by an unsharded copy (best checkpoint, else the `last` one)."""
    fsdp_device = _fsdp_device(module)
    path = checkpoint.best_model_path or (str(last) if fsdp_device is not None and last.is_file() else "")
    if not path:
        return None
    # mmap: a full checkpoint also holds optimizer states, which every rank would otherwise read into memory
    state = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    if fsdp_device is None:
        load_trained(module, state, path)  # an adapter run's checkpoint holds only the trained weights
    else:
        weights = {
            k.removeprefix("model."): v for k, v in state["state_dict"].items() if k.startswith("model.")
        }
        module.model = unsharded_copy(module.model, weights, fsdp_device)
    return int(state.get("epoch", -1)) if checkpoint.best_model_path else None


def save_model(model, tokenizer, folder: Path, settings: InferenceSettings) -> None:
    """`save_pretrained` (safetensors) + tokenizer + inference settings; LoRA adapters are merged so plain
    transformers loads it, except on a 4-bit base (QLoRA), whose adapter and head are saved as they are
    (`load_token_classifier` re-attaches them). Every rank calls it; only rank 0 writes."""
    model = getattr(model, "_orig_mod", model)  # unwrap torch.compile
    main = is_global_zero()
    if quantize.is_quantized(model) and hasattr(model, "get_base_model"):
        quantize.save_adapter(model, folder, is_main_process=main)
    else:
        if hasattr(model, "merge_and_unload"):
            model = model.merge_and_unload()
        model.save_pretrained(folder, is_main_process=main)
    if main:
        tokenizer.save_pretrained(folder)
        write_inference_settings(folder, settings)


def inference_section(
    documents: int, seconds: float, new_tokens: int | None = None, generation_seconds: float = 0.0
) -> dict:
    """The `inference` section of results.json (test prediction and decoding); generative approaches add the
    answer tokens generated (`new_tokens`) and their rate over the `generation_seconds`."""
    section = {
        "documents": documents,
        "seconds": seconds,
        "documents_per_s": documents / seconds if seconds else 0.0,
    }
    if new_tokens is not None:
        section["new_tokens"] = new_tokens  # stop tokens excluded
        section["new_tokens_per_s"] = new_tokens / generation_seconds if generation_seconds else 0.0
    return section


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
    trainer = make_trainer(cfg, run_dir, callbacks, logger)
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

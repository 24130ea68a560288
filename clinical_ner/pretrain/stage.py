"""The continual-pretraining stage of a run (`corpus != none`): reuse cached weights or train and cache them.

The cache key is (base checkpoint id or tiny architecture, tokenizer hash, corpus option + its files' hashes,
`pretrain.*`, its `trainer` included, minus the settings that cannot change the weights). The run seed is not
part of it: the stage seeds itself with `pretrain.seed`, so a sweep over seeds pretrains once. The stage's
Trainer comes from `pretrain.trainer` through the same factory as fine-tuning's (clinical_ner/training/trainer.py).
"""

from __future__ import annotations

import logging
import math
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

import lightning as L
import torch
from lightning.pytorch.loggers import Logger
from omegaconf import OmegaConf
from torch.utils.data import DataLoader

from clinical_ner.config import PretrainConfig, TrainConfig
from clinical_ner.errors import UserError
from clinical_ner.models.backbone import build_causal_lm, count_parameters
from clinical_ner.models.tokenizer import tokenizer_fingerprint
from clinical_ner.models.weights import weights_identity
from clinical_ner.planning.auto_precision import AUTO
from clinical_ner.planning.auto_precision import resolve_precision as resolve_precision_auto
from clinical_ner.planning.setup import fp32_master_weights, pretrain_misfit
from clinical_ner.pretrain.cache import PretrainedEntry
from clinical_ner.pretrain.data import (
    PHARMACONER_DEV,
    VAL,
    CorpusSource,
    PretrainData,
    build_pretrain_data,
    corpus_sources,
)
from clinical_ner.pretrain.module import CausalLMModule
from clinical_ner.pretrain.packing import BlockDataset
from clinical_ner.pretrain.throughput import PackedThroughputMonitor, peak_flops, training_flops
from clinical_ner.run.record.folder import RunFolder
from clinical_ner.training.callbacks import EpochLine, EpochWeightsSaver, TrainStepTimer, progress_bars
from clinical_ner.training.inputs import RunInputs
from clinical_ner.training.loggers import (
    ReferenceArtifact,
    log_reference_artifact,
    make_pretrain_logger,
    opened,
)
from clinical_ner.training.optim import OptimSpec
from clinical_ner.training.timings import phase, recording
from clinical_ner.training.trainer import make_trainer

log = logging.getLogger(__name__)

KEY_FORMAT = 1
# pretrain.* and pretrain.trainer.* settings that do not change the trained weights (changing them reuses the
# cache entry)
NOT_IN_KEY = {
    "use_epoch",
    "log_every_n_steps",
    "enable_progress_bar",
    "flops",
    "peak_tflops",
    "cpu_peak_tflops_bf16",
    "cpu_peak_tflops_fp32",
}
# pretrain.trainer.* settings that sat in pretrain.* when key format 1 was written, under their name there: the
# key keeps them so, and every existing cache entry keeps its key
KEY_NAMES = {
    "max_epochs": "epochs",
    "gradient_clip_val": "gradient_clip_val",
    "accelerator": "accelerator",
    "devices": "devices",
    "strategy": "strategy",
    "precision": "precision",
    "gradient_checkpointing": "gradient_checkpointing",
}


@dataclass
class PretrainOutcome:
    """The weights that feed fine-tuning, the `pretrain` section of results.json, and the cache entry as a
    W&B reference artifact (the pretraining's output, each fine-tuning's input)."""

    weights: Path
    section: dict
    artifact: ReferenceArtifact


def key_material(cfg: TrainConfig, tokenizer, sources: list[CorpusSource]) -> dict:
    """Everything the pretrained weights depend on, as plain JSON-able data."""
    container = OmegaConf.to_container(cfg, resolve=True, enum_to_str=True)
    if cfg.scale.pretrained:
        base = {"checkpoint": weights_identity(cfg.model), "dtype": cfg.scale.dtype}
    else:
        base = {"family": cfg.model.family, "arch": container["model"]["arch"], "scale": container["scale"]}
    corpus = {k: v for k, v in container["corpus"].items() if k != "root"}  # the files' hashes stand for it
    return {
        "format": KEY_FORMAT,
        "base": base,
        "tokenizer": tokenizer_fingerprint(tokenizer),
        "corpus": {**corpus, "files": {s.language: s.files for s in sources}},
        "pretrain": pretrain_key(container["pretrain"]),
    }


def pretrain_key(settings: dict) -> dict:
    """The `pretrain` part of the key from the resolved `pretrain` section: its settings that can change the
    weights, the trainer's among them named as before they moved into `pretrain.trainer` (KEY_NAMES); any
    other trainer setting enters (under `trainer`) only when it differs from its default."""
    key = {k: v for k, v in settings.items() if k != "trainer" and k not in NOT_IN_KEY}
    trainer = settings["trainer"]
    key.update({old: trainer[new] for new, old in KEY_NAMES.items()})
    defaults = OmegaConf.to_container(OmegaConf.structured(PretrainConfig).trainer)
    others = {
        k: v for k, v in trainer.items() if k not in KEY_NAMES and k not in NOT_IN_KEY and v != defaults[k]
    }
    if others:
        key["trainer"] = others
    return key


def resolve_precision(precision: str) -> str:
    """bf16 where supported: a GPU without bf16 gets fp16 mixed precision instead."""
    if "bf16" in precision and torch.cuda.is_available() and not torch.cuda.is_bf16_supported():
        log.warning("this GPU has no bf16: pretraining with 16-mixed instead of %s", precision)
        return precision.replace("bf16", "16")
    return precision


def _device(accelerator: str) -> torch.device:
    """The device Lightning will pick for `accelerator` (for the MFU peak)."""
    gpu = accelerator in ("auto", "gpu", "cuda") and torch.cuda.is_available()
    return torch.device("cuda") if gpu else torch.device("cpu")


def _device_memory(accelerator: str) -> int | None:
    """Bytes of the GPU pretraining will run on; None when it runs on the CPU (memory not planned there)."""
    if _device(accelerator).type != "cuda":
        return None
    return torch.cuda.get_device_properties(torch.cuda.current_device()).total_memory


def train_causal_lm(
    cfg: TrainConfig, tokenizer, data: PretrainData, folder: Path, run_dir: Path, logger: Logger | None
) -> dict:
    """Pretrain, keep the weights after every epoch in `folder/epoch-<n>/`, and return the stage's metrics."""
    p, t = cfg.pretrain, cfg.pretrain.trainer
    with phase("pretrain_build"):
        L.seed_everything(p.seed, workers=True, verbose=False)
        model = build_causal_lm(cfg.model, cfg.scale, tokenizer)
        if fp32_master_weights(t.precision):
            # fp32 master weights: at lr 2e-5 most AdamW updates of a bf16 weight fall below its resolution
            model = model.float()
        if t.gradient_checkpointing:
            model.gradient_checkpointing_enable()
            model.config.use_cache = False
        _, parameters = count_parameters(model)
        names = list(data.evals)
        module = CausalLMModule(model, OptimSpec.from_config(p), eval_names=names)
        precision = resolve_precision(t.precision)
        module.flops_per_batch = training_flops(model, p.batch_size, p.block_size, p.flops)
    train_loader = DataLoader(
        BlockDataset(data.train.blocks),
        batch_size=p.batch_size,
        shuffle=True,
        generator=torch.Generator().manual_seed(p.seed),
    )
    eval_loaders = [
        DataLoader(BlockDataset(data.evals[name].blocks), batch_size=p.batch_size) for name in names
    ]
    timer = TrainStepTimer()
    saver = EpochWeightsSaver(folder, tokenizer)
    peak = peak_flops(p, _device(t.accelerator), precision)
    steps_per_epoch = math.ceil(len(data.train.blocks) / p.batch_size)
    monitor = PackedThroughputMonitor(peak, window_size=min(50, steps_per_epoch))
    bars = progress_bars(t.enable_progress_bar)[1]
    first = names[0] if names else "val"  # the held-out perplexity named in each epoch's log line
    line = EpochLine(f"pretrain/{first}_ppl", f"{first} perplexity", "pretraining epoch")
    callbacks: list[L.Callback] = [timer, saver, monitor, line, *bars]
    trainer = make_trainer(
        t,
        RunFolder(run_dir).pretrain,
        callbacks,
        logger,
        precision=precision,
        enable_checkpointing=False,  # the per-epoch weights are the checkpoints
        enable_model_summary=False,
    )
    log.info(
        "pretraining %s parameters on %s tokens/epoch x %d epochs (%d steps/epoch, %s)",
        f"{parameters:,}",
        f"{data.train.tokens:,}",
        t.max_epochs,
        steps_per_epoch,
        precision,
    )
    # a failure finishes the logger's run as failed (the caller's `opened`)
    with phase("pretrain_validate"):  # perplexities before pretraining
        trainer.validate(module, dataloaders=eval_loaders, verbose=False)
    with phase("pretrain_fit") as fit:  # saves the weights after each epoch too
        trainer.fit(module, train_dataloaders=train_loader, val_dataloaders=eval_loaders)
    history = module.history
    flops_per_token = module.flops_per_batch / (p.batch_size * p.block_size)
    flops_per_s = flops_per_token * timer.tokens_per_s
    return {
        "tokens": timer.tokens,
        "tokens_per_epoch": data.train.tokens,
        "dropped_tokens": data.train.dropped_tokens,
        "eval_tokens": {name: data.evals[name].tokens for name in names},
        "documents": data.documents,
        "steps": trainer.global_step,
        "parameters": parameters,
        "perplexity_by_epoch": history,  # [before, after epoch 1, ...]
        "train_seconds": timer.seconds,
        "fit_seconds": fit.seconds,
        "tokens_per_s": timer.tokens_per_s,
        "flops_per_token": flops_per_token,
        "flops_method": str(p.flops),
        "peak_tflops": peak / 1e12 if peak else None,
        "mfu": flops_per_s / peak if peak else None,
        "precision": precision,
    }


def _section(metrics: dict, hit: bool, use_epoch: int, entry: PretrainedEntry, seconds: float) -> dict:
    history = metrics["perplexity_by_epoch"]
    return {
        "cache_hit": hit,
        "seconds": seconds,
        "epochs": len(history) - 1,
        "use_epoch": use_epoch,
        "weights": str(entry.epoch_folder(use_epoch)),
        "val_ppl_before": history[0][VAL],
        "val_ppl_after": history[use_epoch][VAL],
        "pharmaconer_dev_ppl_before": history[0][PHARMACONER_DEV],
        "pharmaconer_dev_ppl_after": history[use_epoch][PHARMACONER_DEV],
        **metrics,
    }


def run_pretrain(cfg: TrainConfig, run_dir: Path, inputs: RunInputs | None = None) -> PretrainOutcome:
    """Pretrain (or reuse the cache) and return the epoch weights that feed fine-tuning; `inputs`: the run's
    corpus and tokenizers (loaded here when not given)."""
    p = cfg.pretrain
    if p.trainer.precision == AUTO:  # called without a run around it (a run resolves it at its start)
        resolve_precision_auto(cfg)
    if not 1 <= p.use_epoch <= p.trainer.max_epochs:
        raise UserError(
            f"pretrain.use_epoch={p.use_epoch} must be between 1 and "
            f"pretrain.trainer.max_epochs={p.trainer.max_epochs}"
        )
    with recording() as stage:  # this stage's phases, summed into its `seconds`
        metrics, hit, use_epoch, entry, artifact = _pretrain_or_reuse(cfg, run_dir, inputs)
    section = _section(metrics, hit, use_epoch, entry, stage.total)
    log.info(
        "pretrain: %s; PharmaCoNER dev ppl %.1f -> %.1f, held-out ppl %.1f -> %.1f (epoch %d)",
        "cache hit"
        if section["cache_hit"]
        else f"{section['tokens']:,} tokens at {section['tokens_per_s']:,.0f} tokens/s",
        section["pharmaconer_dev_ppl_before"],
        section["pharmaconer_dev_ppl_after"],
        section["val_ppl_before"],
        section["val_ppl_after"],
        p.use_epoch,
    )
    return PretrainOutcome(Path(section["weights"]), section, artifact)


def _pretrain_or_reuse(
    cfg: TrainConfig, run_dir: Path, inputs: RunInputs | None
) -> tuple[dict, bool, int, PretrainedEntry, ReferenceArtifact]:
    """The cache entry's metrics (training and caching them on a miss): `_section`'s arguments but seconds,
    and the weights' artifact reference."""
    p = cfg.pretrain
    with phase("pretrain_prepare"):
        inputs = inputs or RunInputs.load(cfg)
        cache, ner = inputs.cache, inputs.splits
        # the base checkpoint's tokenizer: the one token classification fine-tunes with (same vocabulary)
        tokenizer = inputs.tokenizer()
        sources = corpus_sources(cfg.corpus)
        name = f"{cfg.model.family}-{cfg.corpus.name}-{cfg.scale.name}"
        entry = PretrainedEntry(cache, name, key_material(cfg, tokenizer, sources))
        artifact = ReferenceArtifact(f"pretrained-{name}", entry.folder, entry.digest, entry.material)
    with ExitStack() as locked:
        with phase("pretrain_lock"):  # another job of a sweep may be pretraining the same entry
            locked.enter_context(entry.locked())
        manifest = entry.read_manifest()
        hit = manifest is not None
        if hit:
            log.info("pretrained weights found in the cache: %s", entry.folder)
        else:
            misfit = pretrain_misfit(cfg, _device_memory(p.trainer.accelerator))
            if misfit is not None:
                raise UserError(misfit)
            entry.clear()
            with phase("pretrain_data"):
                data = build_pretrain_data(
                    cfg.corpus, p, sources, tokenizer, entry.material["tokenizer"], ner["dev"], cache
                )
            # the pretraining's own run (W&B job type `pretrain`), finished here, before fine-tuning's starts
            with opened(make_pretrain_logger(cfg, run_dir, artifact)) as logger:
                metrics = train_causal_lm(cfg, tokenizer, data, entry.folder, run_dir, logger)
                manifest = entry.write_manifest(p.trainer.max_epochs, metrics)
                log_reference_artifact(logger, artifact)
    return manifest["metrics"], hit, p.use_epoch, entry, artifact

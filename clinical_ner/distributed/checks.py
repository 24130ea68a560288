"""What a job's distributed settings imply, checked in a second before any process starts or anything loads."""

from __future__ import annotations

import os

import torch
from omegaconf import DictConfig

from clinical_ner.config import listed_gpu_ids
from clinical_ner.errors import UserError

STRATEGIES = ("auto", "ddp", "ddp_find_unused_parameters_true", "fsdp")


def wants_gpu(accelerator: str) -> bool:
    """Whether Lightning will pick CUDA devices for `accelerator`."""
    return accelerator in ("gpu", "cuda") or (accelerator == "auto" and torch.cuda.is_available())


def device_count(accelerator: str, devices) -> int:
    """How many processes Lightning runs on this node for (accelerator, devices), as Lightning parses them."""
    gpu = wants_gpu(accelerator)
    ids = listed_gpu_ids(devices)
    if ids is not None:
        return len(ids)
    text = str(devices).strip()
    if text == "auto":
        return torch.cuda.device_count() if gpu else 1
    try:
        count = int(text)
    except ValueError:
        raise UserError(f"devices={devices!r}: expected a count, a list of GPU ids or auto") from None
    if count == -1 and gpu:
        return torch.cuda.device_count()
    if count < 1:
        raise UserError(f"devices={devices!r}: expected a positive count (-1 = every GPU)")
    return count


def externally_launched() -> bool:
    """True when a launcher started this process as one rank (torchrun, SLURM tasks, our local launch)."""
    from lightning.fabric.plugins.environments import SLURMEnvironment, TorchElasticEnvironment

    return "LOCAL_RANK" in os.environ or SLURMEnvironment.detect() or TorchElasticEnvironment.detect()


def check_strategy(strategy: str, accelerator: str, devices, what: str) -> int:
    """Fail fast on a strategy Lightning would reject late; returns the process count it implies."""
    if strategy not in STRATEGIES:
        raise UserError(
            f"{what}.strategy={strategy}: expected one of {', '.join(STRATEGIES)} "
            "(spawn-based strategies cannot pickle a Hydra job)"
        )
    if accelerator in ("gpu", "cuda") and not torch.cuda.is_available():
        raise UserError(f"{what}.accelerator={accelerator} but no CUDA GPU is visible")
    count = device_count(accelerator, devices)
    if strategy == "fsdp" and not wants_gpu(accelerator):
        raise UserError(
            f"{what}.strategy=fsdp needs CUDA GPUs (Lightning's FSDP has no CPU support); "
            f"{what}.accelerator={accelerator}, CUDA available: {torch.cuda.is_available()}"
        )
    if wants_gpu(accelerator) and count > torch.cuda.device_count():
        raise UserError(f"{what}.devices={devices}: only {torch.cuda.device_count()} CUDA GPU(s) visible")
    return count


def check_distributed(cfg: DictConfig) -> int:
    """The distributed settings of both stages, checked before anything loads; returns the process count."""
    t = cfg.trainer
    count = check_strategy(t.strategy, t.accelerator, t.devices, "trainer")
    if t.strategy == "fsdp" and cfg.approach.finetune != "full":
        raise UserError(
            "trainer.strategy=fsdp shards full fine-tuning (approach.finetune=full); LoRA and QLoRA runs fit "
            "on one GPU each: use trainer=ddp"
        )
    if t.strategy == "fsdp" and cfg.approach.get("share_prefix"):
        # FSDP checkpoints each layer's activations: its recompute would write the prefix cache a second time
        raise UserError(
            "approach.share_prefix=true cannot run under trainer.strategy=fsdp (activation checkpointing "
            "recomputes each layer); set approach.share_prefix=false or use trainer=ddp"
        )
    if cfg.corpus.name != "none":
        p = cfg.pretrain.trainer
        pretrain_count = check_strategy(p.strategy, p.accelerator, p.devices, "pretrain.trainer")
        if pretrain_count > 1:
            # pretrain/stage.py locks, trains and writes its cache entry in each process it runs in
            raise UserError(
                f"pretrain.trainer.devices={p.devices}: continual pretraining runs on one device for now "
                "(docs/full_scale.md, 'Continual pretraining in a multi-GPU job')"
            )
    from lightning.fabric.plugins.environments import SLURMEnvironment, TorchElasticEnvironment

    # Lightning's SLURM environment takes every task for one rank: there must be one task per device
    tasks = os.environ.get("SLURM_NTASKS_PER_NODE") or os.environ.get("SLURM_NTASKS")
    if SLURMEnvironment.detect() and tasks is not None and int(tasks.split("(")[0]) != count:
        raise UserError(
            f"trainer.devices={t.devices} but SLURM started {tasks} task(s) per node: start one task per "
            "device (--ntasks-per-node; hydra/launcher=slurm sets it from trainer.devices)"
        )
    # under torchrun each process is one rank: as many processes per node as devices
    local_world = os.environ.get("LOCAL_WORLD_SIZE")
    if TorchElasticEnvironment.detect() and local_world is not None and int(local_world) != count:
        raise UserError(
            f"trainer.devices={t.devices} but torchrun started {local_world} process(es) per node: "
            f"use torchrun --nproc_per_node {count}, or trainer.devices={local_world}"
        )
    return count


def check_job(cfg: DictConfig) -> int:
    """Everything that would make every rank fail at once, checked in a second before any process starts:
    strategies and devices, quantization, presence of the weights. Returns the process count."""
    from clinical_ner.models.quantize import check_quantization
    from clinical_ner.models.weights import check_weights

    count = check_distributed(cfg)
    check_quantization(cfg)
    check_weights(cfg)
    return count

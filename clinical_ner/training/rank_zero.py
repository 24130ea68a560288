"""Which rank this process is, before or after a process group exists (rank 0 writes the run folder)."""

from __future__ import annotations

import os

import torch


def global_rank() -> int:
    """This process's rank, also before any process group exists (read from the launcher's variables)."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank()
    from lightning.fabric.plugins.environments import SLURMEnvironment

    if SLURMEnvironment.detect():
        return int(os.environ.get("SLURM_PROCID", 0))
    for name in ("RANK", "LOCAL_RANK"):  # torchrun sets RANK; our single-node launch LOCAL_RANK
        if name in os.environ:
            return int(os.environ[name])
    return 0


def is_global_zero() -> bool:
    """True on the process that writes the run folder."""
    return global_rank() == 0

"""Capacity planning: GPU memory and throughput of a run, computed from its config without loading weights."""

from clinical_ner.planning.flops import GPUS, Flops, Gpu, flops_per_token, gpu_for, tokens_per_s
from clinical_ner.planning.memory import (
    Arch,
    GiB,
    MemoryPlan,
    Params,
    Precision,
    Setup,
    count_params,
    plan_setup,
)
from clinical_ner.planning.setup import arch_of, plan_memory, plan_pretrain, precision_of, setup_for

__all__ = [
    "GPUS",
    "Arch",
    "Flops",
    "GiB",
    "Gpu",
    "MemoryPlan",
    "Params",
    "Precision",
    "Setup",
    "arch_of",
    "count_params",
    "flops_per_token",
    "gpu_for",
    "plan_memory",
    "plan_pretrain",
    "plan_setup",
    "precision_of",
    "setup_for",
    "tokens_per_s",
]

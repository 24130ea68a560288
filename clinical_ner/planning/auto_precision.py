"""`precision: auto` (trainer and continual pretraining): on a CPU, the faster of bf16 autocast and fp32 at the
model's own matmul shapes, measured at run start (clinical_ner/planning/probe.py); on a GPU, bf16-mixed.

The probe's rates also go to results.json `train.gemm` so every tokens/s sits beside the limit measured the same
minute (`train.gemm_fraction`). The recorded `config` keeps `auto` (`as_asked`): sweeps compare it with the
composed config to skip finished cells, and `train.precision` says what ran."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch

from clinical_ner.planning.probe import GemmProbe, probe_gemm
from clinical_ner.planning.setup import arch_of

log = logging.getLogger(__name__)

AUTO = "auto"
PROBE_SECONDS = 0.6  # both dtypes, every layer shape: enough to tell a 7x gap, small beside any fit


def resolve_precision(cfg: Any, seconds: float = PROBE_SECONDS) -> GemmProbe | None:
    """Replace `auto` in `cfg.trainer.precision` and `cfg.pretrain.trainer.precision` by a concrete Lightning precision
    and return the CPU probe (None on a GPU, where `auto` means bf16-mixed and no CPU rate is measured)."""
    sections = _sections(cfg)
    # several ranks must agree: each would probe on its own and might choose differently, so they keep bf16
    accelerator = str(cfg.trainer.accelerator)  # as Lightning picks CUDA (distributed/checks.py wants_gpu)
    gpu = accelerator in ("gpu", "cuda") or (accelerator == "auto" and torch.cuda.is_available())
    if gpu or int(os.environ.get("WORLD_SIZE", "1")) > 1:
        for section in sections:
            if section.precision == AUTO:
                section.precision = "bf16-mixed"
        return None
    asked_auto = cfg.trainer.precision == AUTO
    arch = arch_of(cfg)
    probe = probe_gemm(arch.hidden, arch.intermediate, arch.heads, arch.kv_heads, seconds)
    for section in sections:
        if section.precision == AUTO:
            section.precision = probe.precision
    quantized = "quantization" in cfg and str(cfg.quantization.name) != "none"
    if (
        asked_auto and quantized
    ):  # QLoRA's 4-bit layers compute in bf16 and need bf16 inputs: autocast, any CPU
        cfg.trainer.precision = "bf16-mixed"
    bf16 = "no kernel" if probe.bf16_tflops is None else f"{probe.bf16_tflops:.3f} TFLOP/s"
    log.info(
        "GEMM probe (%s): bf16 %s, fp32 %.3f TFLOP/s; precision %s",
        probe.capability,
        bf16,
        probe.fp32_tflops,
        cfg.trainer.precision,
    )
    return probe


def _sections(cfg: Any) -> list:
    return [cfg.trainer] + ([cfg.pretrain.trainer] if "pretrain" in cfg else [])


@contextmanager
def as_asked(cfg: Any) -> Iterator[None]:
    """Put the precisions the config asked for (e.g. `auto`) back when the block ends, however it ends."""
    asked = [section.precision for section in _sections(cfg)]
    try:
        yield
    finally:
        for section, precision in zip(_sections(cfg), asked, strict=True):
            section.precision = precision

"""FLOPs per training batch, the peak FLOP/s that MFU divides by, and Lightning's ThroughputMonitor wired to both."""

from __future__ import annotations

import logging
from typing import Any

import torch
from lightning.fabric.utilities.throughput import get_available_flops, measure_flops
from lightning.pytorch.callbacks import ThroughputMonitor

from clinical_ner.config import PretrainConfig

log = logging.getLogger(__name__)


def formula_flops(model: torch.nn.Module, tokens: int) -> int:
    """6 x N x tokens (forward + backward), N = parameters minus the input embedding (a lookup, no matmul);
    with tied embeddings (Llama 3.2) the shared matrix still does the LM head's matmul, so it stays in N."""
    embedding = model.get_input_embeddings().weight
    output = model.get_output_embeddings()
    tied = output is not None and output.weight is embedding
    params = sum(p.numel() for p in model.parameters()) - (0 if tied else embedding.numel())
    return 6 * params * tokens


def training_flops(model: torch.nn.Module, batch_size: int, block_size: int, method: str) -> int:
    """FLOPs of one training step (forward + backward) on a (batch_size, block_size) batch.

    `measure`: counted by torch's FlopCounterMode on a meta-device copy (no memory, no compute; includes
    attention and the LM head); `formula`: 6 * N * tokens. Gradient-checkpointing recompute is not counted
    (model FLOPs, as MFU is usually defined).
    """
    if str(method) == "formula":
        return formula_flops(model, batch_size * block_size)
    with torch.device("meta"):
        meta = type(model)(model.config)
        ids = torch.zeros(batch_size, block_size, dtype=torch.long)
    return int(measure_flops(meta, lambda: meta(input_ids=ids, labels=ids).loss, loss_fn=lambda loss: loss))


def peak_flops(settings: PretrainConfig, device: torch.device, precision: str) -> float | None:
    """Peak FLOP/s of one device: `pretrain.peak_tflops` if set, Lightning's table on GPUs, else the CPU values
    measured on this project's 2-core machine (a 2026-12-06 probe: bf16 ~1.5-2.5 TFLOP/s, fp32 ~0.4 TFLOP/s)."""
    if settings.peak_tflops:
        return settings.peak_tflops * 1e12
    bf16 = "bf16" in str(precision)
    if device.type == "cuda":
        dtype = torch.bfloat16 if bf16 else torch.float16 if "16" in str(precision) else torch.float32
        return get_available_flops(device, dtype)
    return (settings.cpu_peak_tflops_bf16 if bf16 else settings.cpu_peak_tflops_fp32) * 1e12


class PackedThroughputMonitor(ThroughputMonitor):
    """Lightning's ThroughputMonitor for packed `{"input_ids"}` batches, with a configurable peak for MFU.

    Lightning only knows GPU peaks; on CPU its MFU would be missing, so the peak is set after its setup.
    """

    def __init__(self, peak: float | None, window_size: int = 50) -> None:
        super().__init__(
            batch_size_fn=lambda batch: batch["input_ids"].shape[0],
            length_fn=lambda batch: batch["input_ids"].numel(),
            window_size=max(2, window_size),
        )
        self.peak = peak

    def setup(self, trainer: Any, pl_module: Any, stage: str) -> None:
        super().setup(trainer, pl_module, stage)
        if self.peak:
            self.available_flops = self.peak
            for throughput in self._throughputs.values():  # built by super().setup with Lightning's value
                throughput.available_flops = self.peak

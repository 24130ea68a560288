"""FLOPs per token and the tokens/s a GPU reaches at a given model FLOPs utilization (MFU)."""

from __future__ import annotations

from dataclasses import dataclass

from clinical_ner.planning.memory import Setup, count_params


@dataclass(frozen=True)
class Gpu:
    name: str
    bf16_tflops: float  # dense bf16 tensor-core peak, fp32 accumulate (datasheets; no 2:4 sparsity)
    memory_gib: float  # what torch.cuda.get_device_properties reports, about


GPUS = {
    "h100": Gpu("H100 SXM 80GB", 989.4, 79.6),  # 1979 TFLOP/s is the sparse figure
    "h200": Gpu("H200 SXM 141GB", 989.4, 139.8),  # same GH100 tensor cores as the H100 SXM
    "a100": Gpu("A100 SXM 80GB", 312.0, 79.2),
    "l4": Gpu("L4 24GB", 121.0, 22.0),
    "rtx4090": Gpu("RTX 4090 24GB", 165.2, 23.6),  # 330 TFLOP/s only with fp16 accumulate
}


def gpu_for(device_name: str) -> Gpu | None:
    """Our table's entry for a `torch.cuda.get_device_name()` string (e.g. 'NVIDIA H100 80GB HBM3')."""
    name = device_name.lower().replace(" ", "")
    for key in ("h200", "h100", "a100", "l4", "rtx4090"):
        if key.replace("rtx", "") in name and (key != "l4" or "l40" not in name):
            return GPUS[key]
    return None


@dataclass(frozen=True)
class Flops:
    """Model FLOPs per token (gradient-checkpointing recompute not counted, as MFU is defined)."""

    train: int  # forward + backward
    inference: int  # forward
    matmul_params: int  # N: projections, adapters and head (the embedding is a lookup)


def flops_per_token(s: Setup) -> Flops:
    """Forward 2N + 4 * layers * length * heads * head_dim (QK^T and PV, full square as in PaLM's MFU);
    backward 2N for input gradients + 2N_trained for weight gradients + twice the attention. Full fine-tuning
    gives the usual 6N + 12 * layers * length * hidden; a frozen (LoRA/QLoRA) base skips its weight gradients."""
    n = count_params(s)
    a = s.arch
    attention = 4 * a.layers * s.length * a.heads * a.head_dim
    trained = n.matmul if s.lora is None else n.adapters
    forward = 2 * n.matmul + attention
    return Flops(forward + 2 * n.matmul + 2 * trained + 2 * attention, forward, n.matmul)


def tokens_per_s(flops_per_token: int, gpu: Gpu, mfu: float, devices: int = 1) -> float:
    """Tokens/s over `devices` GPUs at utilization `mfu` of the bf16 dense peak."""
    return mfu * gpu.bf16_tflops * 1e12 * devices / flops_per_token

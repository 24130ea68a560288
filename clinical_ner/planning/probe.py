"""This machine's limits right now, measured in the calling process: the GEMM rate (bf16 and fp32) at a model's
own matmul shapes and the memory bandwidth. A shared CPU can run several times slower one hour than the next, so a
speed is only meaningful beside the limit measured in the same run (benchmarks/bench_real_weights.py, results.json
`train`). The host also changes: on a CPU with AMX bf16 matmuls run ~8x faster than fp32; on an AVX2-only CPU
(no AVX-512 BF16, no AMX: torch's capability `AVX2`) bf16 falls back to a scalar loop ~7x SLOWER than fp32, so
`trainer.precision=auto` picks the faster of the two by measuring (`choose_precision`)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch


def model_shapes(hidden: int, intermediate: int, heads: int, kv_heads: int, rows: int) -> dict[str, tuple]:
    """(M, K, N) of a Llama layer's matmuls for `rows` tokens: q/o, k/v, MLP up/gate, MLP down."""
    head_dim = hidden // heads
    return {
        "q/o": (rows, hidden, hidden),
        "k/v": (rows, hidden, kv_heads * head_dim),
        "up/gate": (rows, hidden, intermediate),
        "down": (rows, intermediate, hidden),
    }


@contextmanager
def threads(count: int | None) -> Iterator[None]:
    """Run the block on `count` intra-op threads (None: leave as is), then restore the previous count."""
    before = torch.get_num_threads()
    if count is not None:
        torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def gemm_tflops(m: int, k: int, n: int, seconds: float, dtype: torch.dtype = torch.bfloat16) -> float:
    """TFLOP/s of repeated (m x k) @ (k x n) matmuls for about `seconds` (after a warm-up product)."""
    a, b = torch.randn(m, k, dtype=dtype), torch.randn(k, n, dtype=dtype)
    out = torch.empty(m, n, dtype=dtype)
    torch.matmul(a, b, out=out)
    count, started = 0, time.perf_counter()
    while count < 1 or time.perf_counter() - started < seconds:
        torch.matmul(a, b, out=out)
        count += 1
    return 2 * m * k * n * count / (time.perf_counter() - started) / 1e12


def gemm_rate(
    shapes: dict[str, tuple],
    seconds: float,
    thread_count: int | None = None,
    dtype: torch.dtype = torch.bfloat16,
) -> dict[str, float]:
    """TFLOP/s per named shape, plus `mean` (the FLOP-weighted harmonic mean: the rate a layer made of these
    matmuls would run at), on `thread_count` threads (None: the current count)."""
    with threads(thread_count):
        rates = {name: gemm_tflops(*shape, seconds / len(shapes), dtype) for name, shape in shapes.items()}
    flops = {name: m * k * n for name, (m, k, n) in shapes.items()}
    rates["mean"] = sum(flops.values()) / sum(flops[name] / rates[name] for name in flops)
    return rates


def bandwidth_gbs(megabytes: int, seconds: float, thread_count: int | None = None) -> float:
    """Memory bandwidth in GB/s: copies of a `megabytes` buffer (bytes read + bytes written per second)."""
    with threads(thread_count):
        src = torch.ones(megabytes * 2**20 // 4)
        dst = torch.zeros_like(src)  # touched pages: no page faults inside the timing
        dst.copy_(src)
        count, started = 0, time.perf_counter()
        while count < 2 or time.perf_counter() - started < seconds:
            dst.copy_(src)
            count += 1
        return 2 * src.numel() * 4 * count / (time.perf_counter() - started) / 1e9


@dataclass
class GemmProbe:
    """What a run-start probe measured: TFLOP/s per dtype at the model's shapes, and the precision chosen."""

    bf16_tflops: float | None  # None: oneDNN has no bf16 kernel here (not timed: a scalar loop)
    fp32_tflops: float
    capability: str  # torch's CPU capability: AVX2, AVX512, ...

    @property
    def precision(self) -> str:
        """`bf16-mixed` where bf16 matmuls are clearly faster than fp32 (AMX, AVX-512 BF16), else `32-true`."""
        return "bf16-mixed" if (self.bf16_tflops or 0.0) > 1.2 * self.fp32_tflops else "32-true"

    def tflops(self, precision: str) -> float | None:
        """The rate the run's matmuls can reach under `precision` (what `train.gemm_fraction` divides by)."""
        return self.bf16_tflops if "16" in str(precision) else self.fp32_tflops

    def as_dict(self) -> dict:
        return {
            "bf16_tflops": self.bf16_tflops,
            "fp32_tflops": self.fp32_tflops,
            "capability": self.capability,
        }


def probe_gemm(
    hidden: int, intermediate: int, heads: int, kv_heads: int, seconds: float = 1.0, repeats: int = 3
) -> GemmProbe:
    """bf16 and fp32 GEMM rates at a Llama's layer shapes (1024 rows) on the current thread count: the dtypes
    alternate `repeats` times and each keeps its best slice, so a busy neighbour's burst does not decide."""
    shapes = model_shapes(hidden, intermediate, heads, kv_heads, 1024)
    best = {torch.bfloat16: 0.0, torch.float32: 0.0} if bf16_kernels() else {torch.float32: 0.0}
    for _ in range(repeats):
        for dtype in best:
            rate = gemm_rate(shapes, seconds / (len(best) * repeats), dtype=dtype)["mean"]
            best[dtype] = max(best[dtype], rate)
    capability = torch.backends.cpu.get_cpu_capability()
    return GemmProbe(best.get(torch.bfloat16), best[torch.float32], capability)


def bf16_kernels() -> bool:
    """Whether oneDNN has bf16 matmul kernels on this CPU (AVX-512 BF16 or AMX); without them torch computes bf16
    matmuls in a scalar fallback loop (seen on an AVX2-only AMD EPYC: ~7x slower than fp32)."""
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):  # a build without oneDNN: time bf16 like any other dtype
        return True


def train_flops_per_token(
    hidden: int, intermediate: int, heads: int, kv_heads: int, layers: int, full: bool
) -> float:
    """Training FLOPs per token of the decoder layers' matmuls: 6 x their parameters in full fine-tuning, ~4 x
    with frozen weights (LoRA: input gradients still flow through every layer); attention scores and the
    embedding/head left out."""
    head_dim = hidden // heads
    attn = hidden * head_dim * (2 * heads + 2 * kv_heads)
    return (6 if full else 4) * layers * (attn + 3 * hidden * intermediate)

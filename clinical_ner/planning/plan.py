"""Plan a run's GPU memory and throughput from its config, without loading any weights.

    clinical-ner plan model=llama2 approach=tokencls scale=paper [quantization=nf4] [data.batch_size=8 ...]
        [--gpu h100|h200|a100|l4|rtx4090] [--mfu 0.4] [--checkpointing on|off] [--json]

(= `python -m clinical_ner.planning.plan ...`). Overrides are the Hydra ones of `clinical_ner.train`. With
`corpus != none` the continual-pretraining stage is planned first (full fine-tuning, FSDP across
`pretrain.trainer.devices`). Formulas and assumptions: docs/planning.md.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import replace

from rich.console import Console
from rich.table import Table

from clinical_ner.planning import (
    GPUS,
    GiB,
    Gpu,
    MemoryPlan,
    flops_per_token,
    plan_setup,
    setup_for,
    tokens_per_s,
)
from clinical_ner.planning.memory import CUDA_CONTEXT, FRAGMENTATION, nf4_bytes


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line, exit 2
        print(f"error: {message}", file=sys.stderr)
        raise SystemExit(2)


def _gib(n: float) -> str:
    return f"{n / GiB:.2f}"


def _count(n: float) -> str:
    for unit, size in (("B", 1e9), ("M", 1e6), ("k", 1e3)):
        if n >= size:
            return f"{n / size:.2f}{unit}"
    return str(int(n))


def _dtype(nbytes: int) -> str:
    return {2: "bf16", 4: "fp32"}[nbytes]


def memory_table(plan: MemoryPlan, alt: MemoryPlan, gpu: Gpu) -> Table:
    """The components of `plan` with how each is computed; `alt` is the same stage with checkpointing toggled."""
    s, n, p = plan.setup, plan.params, plan.setup.precision
    pb = _dtype(p.params)
    trained = p.params if s.lora is None else p.adapters  # bytes of trained params, their grads and moments
    tb = _dtype(trained)
    title = f"{s.stage}: batch {s.batch} x {s.length} tokens per device, {p.name}"
    if s.devices > 1:
        title += f", {s.devices} devices"
    table = Table(title=title, title_justify="left")
    table.add_column("component")
    table.add_column("GiB", justify="right")
    table.add_column("how")
    if s.nf4:
        per = nf4_bytes(10**9, s.double_quant) / 1e9
        how = f"NF4 {per:.3f} B/param on {_count(n.projections)} projections; {_count(n.base - n.projections)} bf16"
    else:
        how = f"{_count(n.base)} params x {p.params} B ({pb})"
    table.add_row("weights", _gib(plan.weights), how)
    if s.lora is not None:
        head = "" if s.causal_lm else " + trained `score` copy"
        how = f"{_count(n.adapters)} params: r {s.lora.r} on {len(s.lora.targets)} projections{head}, {tb}"
        table.add_row("LoRA adapters", _gib(plan.adapters), how)
    table.add_row("gradients", _gib(plan.gradients), f"{_count(n.trainable)} trainable params, {tb}")
    master = "no fp32 master copy" if trained == 2 else "the fp32 params are the master copy"
    table.add_row("AdamW state", _gib(plan.optimizer), f"exp_avg + exp_avg_sq in {tb}; {master}")
    other = "with" if not s.checkpointing else "without"
    how = f"saved for backward, sdpa, {'' if s.checkpointing else 'no '}checkpointing ({other}: {_gib(alt.activations)})"
    table.add_row("activations", _gib(plan.activations), how)
    classes = f"{s.arch.vocab:,} vocab" if s.causal_lm else f"{s.num_labels} labels"
    table.add_row("logits + loss", _gib(plan.logits), f"fp32 log-softmax over {classes}")
    if plan.transient:
        how = "fp32 logit gradients in the loss backward" if s.causal_lm else ""
        if s.checkpointing:
            how += (", " if how else "") + "one recomputed layer"
        if s.nf4:
            how += (", " if how else "") + "one dequantized weight"
        table.add_row("transient", _gib(plan.transient), how)
    if plan.distributed:
        how = "FSDP: gathered root + 2 layers, 1 layer's grads" if s.fsdp else "DDP gradient buckets"
        table.add_row("distributed", _gib(plan.distributed), how)
    table.add_row("tensors", _gib(plan.tensors), "what torch.cuda.max_memory_allocated sees", style="bold")
    table.add_row(
        "CUDA context", _gib(plan.context), f"~{CUDA_CONTEXT / GiB:.1f} GiB: context, cuBLAS workspace"
    )
    table.add_row(
        "fragmentation", _gib(plan.fragmentation), f"{FRAGMENTATION:.0%} of tensors (allocator slack)"
    )
    fits = "fits" if plan.total <= gpu.memory_gib * GiB else "does NOT fit"
    how = f"{fits} in {gpu.name} ({gpu.memory_gib:.0f} GiB): {plan.total / (gpu.memory_gib * GiB):.0%}"
    table.add_row("total per device", _gib(plan.total), how, style="bold")
    if plan.kv_cache:
        how = f"generation: weights + adapters + KV cache of {s.eval_batch} x {s.eval_tokens} tokens"
        table.add_row("inference", _gib(plan.weights + plan.adapters + plan.kv_cache), how)
    return table


def throughput_lines(plan: MemoryPlan, gpu: Gpu, mfu: float) -> list[str]:
    """Tokens/s at `mfu` of the GPU's bf16 dense peak, from FLOPs per token."""
    s = plan.setup
    f = flops_per_token(s)
    rule = "6N + 12 L s h" if s.lora is None else "4N + 2N_trained + 12 L s h (frozen base: no weight grads)"
    train = tokens_per_s(f.train, gpu, mfu, s.devices)
    infer = tokens_per_s(f.inference, gpu, mfu, s.devices)
    return [
        f"N = {_count(f.matmul_params)} matmul params; train {f.train:.3g} FLOPs/token ({rule}), "
        f"inference {f.inference:.3g} (2N + 4 L s h)",
        f"at MFU {mfu:.2f} of {gpu.bf16_tflops:g} TFLOP/s ({gpu.name}, bf16 dense) x {s.devices}: "
        f"train {train:,.0f} tokens/s ({train / s.tokens / s.devices:.2f} steps/s), inference {infer:,.0f} tokens/s",
    ]


def as_json(plan: MemoryPlan, gpu: Gpu, mfu: float) -> dict:
    """The plan's bytes per component and throughput, for scripts."""
    keys = ("weights", "adapters", "gradients", "optimizer", "activations", "logits", "transient")
    f = flops_per_token(plan.setup)
    return {
        "stage": plan.setup.stage,
        "bytes": {k: getattr(plan, k) for k in (*keys, "distributed", "tensors", "context", "fragmentation")},
        "total_bytes": plan.total,
        "parameters": plan.params.total,
        "trainable_parameters": plan.params.trainable,
        "flops_per_token": {"train": f.train, "inference": f.inference},
        "train_tokens_per_s": tokens_per_s(f.train, gpu, mfu, plan.setup.devices),
        "gpu": gpu.name,
        "mfu": mfu,
    }


def main(argv: list[str] | None = None) -> int:
    """Compose the config from the overrides, plan each stage the run trains, print tables (or JSON)."""
    parser = _Parser(prog="python -m clinical_ner.planning.plan", description=__doc__.splitlines()[0])
    parser.add_argument("overrides", nargs="*", help="Hydra overrides, e.g. model=llama3 scale=paper")
    parser.add_argument("--gpu", choices=sorted(GPUS), default="h100")
    parser.add_argument("--mfu", type=float, default=0.4, help="model FLOPs utilization for tokens/s")
    parser.add_argument("--checkpointing", choices=["on", "off"], help="checkpointing while fine-tuning")
    parser.add_argument("--json", action="store_true", help="print the plans as JSON")
    args = parser.parse_args(argv)
    if not 0 < args.mfu <= 1:
        parser.error(f"--mfu must be in (0, 1], got {args.mfu}")
    from clinical_ner.config import compose_config  # Hydra import: after argument errors

    try:
        cfg = compose_config(args.overrides)
        setups = [setup_for(cfg, "pretrain")] if str(cfg.corpus.name) != "none" else []
        tune = setup_for(cfg)
        if args.checkpointing:
            tune = replace(tune, checkpointing=args.checkpointing == "on")
        setups.append(tune)
        plans = [(plan_setup(s), plan_setup(replace(s, checkpointing=not s.checkpointing))) for s in setups]
    except Exception as err:  # noqa: BLE001 - bad overrides and unsupported settings: one line, no traceback
        parser.error(str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__)
    gpu = GPUS[args.gpu]
    if args.json:
        print(json.dumps([as_json(plan, gpu, args.mfu) for plan, _ in plans], indent=2))
        return 0
    console = Console()
    q = str(cfg.quantization.name)
    console.print(
        f"[bold]{cfg.model.family} {cfg.approach.name}[/] scale={cfg.scale.name} quantization={q} "
        f"corpus={cfg.corpus.name}: {plans[-1][0].params.total:,} parameters, "
        f"{plans[-1][0].params.trainable:,} trainable"
    )
    for plan, alt in plans:
        console.print(memory_table(plan, alt, gpu))
        for line in throughput_lines(plan, gpu, args.mfu):
            console.print(line, highlight=False)
        for note in plan.notes:
            console.print(f"note: {note}", highlight=False)
        console.print()
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Check the planner against a GPU: each family at its REAL size (architecture from `model.arch`, random weights
allocated on the GPU in bf16, no download) trains a few steps of each approach (tokencls: LoRA r 12 + `score`;
seq2seq: LoRA r 64 on every projection) and generates a batch; prints tokens/s, MFU, peak memory
(torch.cuda.max_memory_allocated) and the planner's prediction beside each measurement.

    python -m clinical_ner.checks.gpu.planner [--families llama2,llama3,llama3_1,llama3_2] [--steps 4] [--batch-size 8]
        [--length 256] [--quantization nf4] [--out docs/gpu_check.md]
    python -m clinical_ner.checks.gpu.planner --small   # CPU: tiny sizes, 2 steps in fp32 (tests/unit/test_plan.py)

On CPU the "peak" column is the measured tensor bytes (parameters, gradients, AdamW state, saved activations).
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from clinical_ner.checks.gpu import device as gpu_common
from clinical_ner.config import compose_config
from clinical_ner.planning import GiB, flops_per_token, plan_setup, setup_for
from clinical_ner.planning.measure import build_model, measure_step, random_batch
from clinical_ner.planning.memory import Setup, plan_generation

LORA_R = {"tokencls": 12, "seq2seq": 64}  # the paper recipes' ranks


@dataclass
class Row:
    family: str
    task: str  # tokencls | seq2seq | generate
    quantization: str
    shape: str  # batch x tokens
    tokens_per_s: float
    mfu: float | None
    measured_gib: float
    planned_gib: float

    @property
    def ratio(self) -> float:
        return self.measured_gib / self.planned_gib if self.planned_gib else float("nan")


def overrides(family: str, approach: str, args: argparse.Namespace) -> list[str]:
    """The run config of one check: paper recipe (tiny sizes with --small), LoRA as in the paper, bf16."""
    out = [f"model={family}", f"approach={approach}", f"scale={'tiny' if args.small else 'paper'}"]
    out += [f"quantization={args.quantization}", f"data.batch_size={args.batch_size}"]
    out += [f"approach.max_length={args.length}"]
    out += ["trainer.precision=32-true" if args.small else "trainer.precision=bf16-true"]  # CPU bf16 is slow
    if args.small:  # the tiny recipes train every weight: use the paper's adapters instead
        out += ["approach.finetune=lora", f"approach.lora.r={LORA_R[approach]}"]
    return out


def train_check(cfg, setup: Setup, device: torch.device, steps: int) -> tuple[float, float]:
    """(tokens/s over the steps after the first, measured GiB) of `steps` AdamW steps on random batches."""
    model = build_model(cfg, setup, device)
    gpu_common.free(device, reset_peak=True)  # peak from here: an NF4 build passes through bf16 weights
    batch = random_batch(setup, device)
    if device.type == "cpu":  # tensor bytes of one step, measured as tests/unit/test_plan.py does
        measured = measure_step(model, setup, batch).total
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-5)
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=setup.precision.mixed)
    start = 0.0
    for step in range(steps):
        if step == 1:
            gpu_common.sync(device)
            start = time.perf_counter()
        with autocast:
            loss = model(**batch).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    gpu_common.sync(device)
    elapsed = time.perf_counter() - start
    if device.type == "cuda":
        measured = torch.cuda.max_memory_allocated(device)
    tokens_per_s = (steps - 1) * setup.tokens / elapsed if steps > 1 and elapsed > 0 else 0.0
    del model, optimizer, batch
    return tokens_per_s, measured / GiB


@torch.no_grad()
def generate_check(cfg, setup: Setup, device: torch.device, batch: int, prompt: int, new: int) -> Row:
    """Greedy generation of `new` tokens after a `prompt`-token random prompt (KV cache), as seq2seq decodes."""
    model = build_model(cfg, setup, device).eval()
    ids = torch.randint(3, setup.arch.vocab, (batch, prompt), device=device)
    mask = torch.ones_like(ids)
    gpu_common.free(
        device, reset_peak=True
    )  # peak from here: the model is resident, generation adds the KV cache
    gpu_common.sync(device)
    start = time.perf_counter()
    out = model.generate(
        input_ids=ids,
        attention_mask=mask,
        max_new_tokens=new,
        min_new_tokens=new,
        do_sample=False,
        pad_token_id=0,
    )
    gpu_common.sync(device)
    elapsed = time.perf_counter() - start
    made = (out.shape[1] - prompt) * batch
    measured = torch.cuda.max_memory_allocated(device) / GiB if device.type == "cuda" else float("nan")
    planned = plan_generation(setup, batch, prompt, new) / GiB
    del model
    return Row(cfg.model.family, "generate", str(cfg.quantization.name), f"{batch}x{prompt}+{new}",
               made / elapsed, None, measured, planned)  # fmt: skip


def run(args: argparse.Namespace) -> list[Row]:
    """Every family x approach (+ one generation batch per family) on the chosen device."""
    device = torch.device("cpu" if args.small or not torch.cuda.is_available() else "cuda")
    rows = []
    for family in args.families:
        for approach in ("tokencls", "seq2seq"):
            cfg = compose_config(overrides(family, approach, args))
            setup = setup_for(cfg, cuda=device.type == "cuda")
            plan = plan_setup(setup)
            tokens_per_s, measured = train_check(cfg, setup, device, args.steps)
            peak = gpu_common.peak_flops(cfg, setup, device)
            mfu = tokens_per_s * flops_per_token(setup).train / peak if peak else None
            planned = plan.tensors if device.type == "cuda" else plan.tensors - plan.transient
            shape = f"{setup.batch}x{setup.length}"
            q = str(cfg.quantization.name)
            rows.append(Row(family, approach, q, shape, tokens_per_s, mfu, measured, planned / GiB))
            print(_line(rows[-1]), flush=True)
            if approach == "seq2seq":
                gpu_common.free(device, reset_peak=True)
                rows.append(generate_check(cfg, setup, device, args.gen_batch, args.gen_prompt, args.gen_new))
                print(_line(rows[-1]), flush=True)
            gpu_common.free(device, reset_peak=True)
    return rows


def _line(r: Row) -> str:
    mfu = f"{r.mfu:.2f}" if r.mfu is not None else "-"
    return (
        f"| {r.family} | {r.task} | {r.quantization} | {r.shape} | {r.tokens_per_s:,.0f} | {mfu} "
        f"| {r.measured_gib:.3g} | {r.planned_gib:.3g} | {r.ratio:.2f} |"
    )


def markdown(rows: list[Row], device_name: str, argv: list[str]) -> str:
    """The report: date, device, versions, command and one table row per check."""
    head = [
        *gpu_common.report_head(
            "GPU check: planner vs. measurement", device_name, "clinical_ner.checks.gpu.planner", argv
        ),
        "| family | task | quantization | batch x tokens | tokens/s | MFU | measured GiB | planned GiB | ratio |",
        "| --- | --- | --- | --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    return "\n".join(head + [_line(r) for r in rows]) + "\n"


def main(argv: list[str] | None = None) -> int:
    """Parse options, run the checks, print (and with --out write) the Markdown table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--families", default=",".join(gpu_common.FAMILIES), help="comma-separated model families"
    )
    parser.add_argument("--steps", type=int, default=4, help="training steps (the first is not timed)")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--length", type=int, default=256, help="tokens per training sequence")
    parser.add_argument("--quantization", choices=["none", "nf4"], default="none")
    parser.add_argument("--gen-batch", type=int, default=8)
    parser.add_argument("--gen-prompt", type=int, default=512)
    parser.add_argument("--gen-new", type=int, default=64)
    parser.add_argument("--small", action="store_true", help="CPU: tiny sizes in fp32, 2 steps of 2 x 32")
    parser.add_argument("--out", type=Path, help="write the Markdown table here (e.g. docs/gpu_check.md)")
    argv = sys.argv[1:] if argv is None else argv
    args = parser.parse_args(argv)
    args.families = gpu_common.parse_families(parser, args.families)
    if args.small:
        torch.set_num_threads(1)  # toy matmuls: threads only add synchronisation (100x slower on a busy CPU)
        args.steps, args.batch_size, args.length = 2, 2, 32
        args.gen_batch, args.gen_prompt, args.gen_new = 2, 16, 4
    found = gpu_common.device_for(args.small)
    if found is None:
        return 2
    device_name = found[1]
    print(markdown([], device_name, argv), end="", flush=True)
    rows = run(args)
    gpu_common.write_report(args.out, markdown(rows, device_name, argv))
    if args.out:
        print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Training MFU of the paper recipes at each family's REAL size (random bf16 weights on the GPU, no download),
before and after the speed changes, in one process so the ratios share the machine: token classification
(LoRA r 12 + `score`, 256-token windows) at the recipe's micro-batch 8 x 2 accumulation and at the planner's
micro-batch 16 x 1 (same effective batch 16), with and without `torch.compile`; seq2seq (LoRA r 64 on every
projection, whole documents) with the LM head on every position (the original's loss) and on answer positions
only (`answer_loss`, what the CLI trains with).

    python -m clinical_ner.checks.gpu.mfu --families llama3_1,llama3_2 --out docs/gpu_mfu.md     # one GPU, ~2-3 min
    python -m clinical_ner.checks.gpu.mfu --small                                                # CPU smoke run

MFU = real tokens/s x model FLOPs per token (clinical_ner/planning/flops.py: 2N forward, 2N input gradients,
attention; the frozen base has no weight gradients; the LM head counted only where it is applied) / bf16 dense
peak (989 TFLOP/s on an H100/H200).
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path

import torch

from clinical_ner.approaches.seq2seq.module import answer_loss
from clinical_ner.checks.gpu import device as gpu_common
from clinical_ner.config import compose_config
from clinical_ner.planning import flops_per_token, setup_for
from clinical_ner.planning.measure import build_model, random_batch


@dataclass(frozen=True)
class Case:
    approach: str
    micro_batch: int
    accumulate: int
    length: int
    compiled: bool = False
    answer_only: bool = True  # seq2seq: LM head on answer positions only
    answer_share: float = 0.25  # seq2seq: share of each sequence that is answer (the rest is prompt)

    @property
    def name(self) -> str:
        extra = " + compile" if self.compiled else ""
        if self.approach == "seq2seq":
            extra += ", head on answers" if self.answer_only else ", head on every position"
        return f"{self.approach} {self.micro_batch}x{self.length} x{self.accumulate}{extra}"


CASES = (
    Case("tokencls", 8, 2, 256),  # the paper recipe as it was
    Case("tokencls", 16, 1, 256),  # the planner's micro-batch: the whole effective batch in one pass
    Case("seq2seq", 4, 1, 1024, answer_only=False),
    Case("seq2seq", 4, 1, 1024),
    Case("tokencls", 16, 1, 256, compiled=True),  # last: compiling an 8B graph may take minutes
)


def config(family: str, case: Case, small: bool):
    """The paper recipe of `case.approach` at `case`'s shape (tiny sizes with LoRA on the CPU)."""
    over = [f"model={family}", f"approach={case.approach}", f"scale={'tiny' if small else 'paper'}"]
    over += [f"data.batch_size={case.micro_batch}", f"approach.max_length={case.length}"]
    over += [f"trainer.accumulate_grad_batches={case.accumulate}"]
    if small:
        r = 12 if case.approach == "tokencls" else 64
        over += ["approach.finetune=lora", f"approach.lora.r={r}", "trainer.precision=32-true"]
    return compose_config(over)


def step_loss(model, batch: dict, case: Case) -> torch.Tensor:
    if case.approach == "seq2seq" and case.answer_only:
        return answer_loss(model, batch)
    return model(**batch).loss


def measure(family: str, case: Case, device: torch.device, steps: int, small: bool) -> tuple[float, float]:
    """(real tokens/s, MFU) over `steps` optimizer steps after two untimed ones (compilation, allocator)."""
    cfg = config(family, case, small)
    setup = setup_for(cfg, cuda=device.type == "cuda")
    model = build_model(cfg, setup, device)
    if case.compiled:
        model.compile()  # nn.Module.compile: the forward of the whole (peft) model, in place
    batch = random_batch(setup, device)
    if setup.causal_lm:  # prompt positions carry no label, as seq2seq examples do
        prompt = int(case.length * (1 - case.answer_share))
        batch["labels"][:, :prompt] = -100
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-5)
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=setup.precision.mixed)
    start = 0.0
    for step in range(steps + 2):
        if step == 2:
            gpu_common.sync(device)
            start = time.perf_counter()
        for _ in range(case.accumulate):
            with autocast:
                loss = step_loss(model, batch, case) / case.accumulate
            loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    gpu_common.sync(device)
    tokens_per_s = steps * case.accumulate * setup.tokens / (time.perf_counter() - start)
    flops = flops_per_token(setup).train
    if setup.causal_lm and case.answer_only:  # the head (forward + input gradient) runs on answers only
        flops -= round(4 * setup.arch.vocab * setup.arch.hidden * (1 - case.answer_share))
    peak = gpu_common.peak_flops(cfg, setup, device)
    del model, optimizer, batch
    gpu_common.free(device)
    return tokens_per_s, tokens_per_s * flops / peak if peak else float("nan")


def main(argv: list[str] | None = None) -> int:
    """Every family x case; prints (and with --out writes) one Markdown table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--families", default="llama3_1,llama3_2", help=f"comma-separated, from {gpu_common.FAMILIES}"
    )
    parser.add_argument("--steps", type=int, default=4, help="timed optimizer steps per case")
    parser.add_argument("--no-compile", action="store_true", help="skip the torch.compile cases")
    parser.add_argument("--small", action="store_true", help="CPU: tiny sizes, short sequences")
    parser.add_argument("--out", type=Path)
    argv = sys.argv[1:] if argv is None else argv
    args = parser.parse_args(argv)
    families = gpu_common.parse_families(parser, args.families)
    found = gpu_common.device_for(args.small)
    if found is None:
        return 2
    device, device_name = found
    cases = [c for c in CASES if not (args.no_compile and c.compiled)]
    if args.small:
        torch.set_num_threads(1)
        cases = [replace(c, micro_batch=c.micro_batch // 4, length=32) for c in cases]
    lines = gpu_common.report_head(
        "Training MFU at real size", device_name, "clinical_ner.checks.gpu.mfu", argv
    )
    lines += ["| family | case | tokens/s | MFU |", "| --- | --- | ---: | ---: |"]
    print("\n".join(lines), flush=True)
    for family in families:
        for case in cases:
            try:
                tokens_per_s, mfu = measure(family, case, device, args.steps, args.small)
                row = f"| {family} | {case.name} | {tokens_per_s:,.0f} | {mfu:.3f} |"
            except Exception as error:  # one failing case (e.g. compile) must not hide the others
                row = f"| {family} | {case.name} | failed: {type(error).__name__}: {str(error)[:80]} | |"
                gpu_common.free(device)
            lines.append(row)
            print(row, flush=True)
    gpu_common.write_report(args.out, "\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

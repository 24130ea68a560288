"""One job at a time on both cores, or two jobs at once on one core each: which finishes a study's cells sooner.

The same work per job, timed in both arrangements in one run: `--jobs` jobs one after another with `--threads`
threads each, then the same jobs side by side with one thread each (started together behind a barrier, once
every child has loaded its model, so loading is not timed). Work (`--work`):
  train:    token-classification optimizer steps of the small recipe on real PharmaCoNER windows (SmolLM2-135M,
            `precision: auto`, fused AdamW; bench_real_weights.py's workload)
  generate: a trained seq2seq run's first `--prompts` test units answered as the run predicts (`--model
            RUN/model`: constrained decoding, jump-forward and copy drafts where its format has them), the part
            of a seq2seq cell where Python, not the GEMMs, holds a core
Prints wall seconds per arrangement and the side-by-side throughput as a multiple of one-at-a-time's.
Usage: python benchmarks/bench_concurrency.py --work train,generate --model RUN/model [--steps 6] [--prompts 96]
       python benchmarks/bench_concurrency.py --small   (a random tiny Llama: seconds; tests)
Memory: each side-by-side job holds its own model (a real token-classification job peaks near 6 GB).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from bench_real_weights import full_head_loss, make_step, real_workload, tiny_workload  # noqa: E402

WORKS = ("train", "generate")


def load(work: str, args: argparse.Namespace):
    """A callable that does one job's `work` (the model loaded, one warm-up step done)."""
    if work == "train":
        if args.small:
            work_ = tiny_workload(args.steps + 1, 16, 1)
            precision = "32-true"
        else:
            from clinical_ner.planning.probe import probe_gemm

            work_ = real_workload(args.steps + 1, 16, 1, 8, ("tokencls",))
            c = work_.classifier.config
            dims = (c.hidden_size, c.intermediate_size, c.num_attention_heads, c.num_key_value_heads)
            precision = probe_gemm(*dims, seconds=1.0).precision  # what `precision: auto` picks here
        step = make_step(work_.classifier, precision, full_head_loss, fused=True)
        step(work_.batches[-1])  # warm-up
        return lambda: [step(batch) for batch in work_.batches[: args.steps]]
    if args.small:
        from clinical_ner.approaches.seq2seq.decoding import generate

        work_ = tiny_workload(1, 1, args.prompts)
        lm = work_.lm.eval()
        return lambda: generate(lm, work_.prompts, work_.pad_id, work_.stop_ids, 24, 8, "32-true")
    from bench_seq2seq import load_run, run_decoder

    from clinical_ner.data.brat import read_split

    splits = {"test": read_split(Path(os.environ["PHARMACONER_DIR"]) / "test")}
    settings, tokenizer, model, renderer, split, indices = load_run(args.model, splits, args.prompts)
    decoder = run_decoder(settings, tokenizer, renderer, args.batch_size)
    decoder.answer_split(model, split, indices[:2])  # warm-up (and the trie)
    return lambda: decoder.answer_split(model, split, indices)


def child(args: argparse.Namespace) -> None:
    """One job: load, say ready, wait for the go line, work, print its seconds as JSON."""
    torch.set_num_threads(args.threads)
    job = load(args.child, args)
    print("ready", flush=True)
    sys.stdin.readline()
    started = time.perf_counter()
    job()
    print(json.dumps({"seconds": time.perf_counter() - started}), flush=True)


def run_jobs(work: str, threads: int, count: int, args: argparse.Namespace) -> list[float]:
    """Start `count` children of `work` with `threads` threads each, release them together, their seconds."""
    command = [
        sys.executable,
        __file__,
        "--child",
        work,
        "--threads",
        str(threads),
        "--steps",
        str(args.steps),
    ]
    command += ["--prompts", str(args.prompts), "--batch-size", str(args.batch_size)]
    if args.small:
        command.append("--small")
    elif args.model:
        command += ["--model", str(args.model)]
    jobs = [
        subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        for _ in range(count)
    ]
    for job in jobs:
        if job.stdout.readline().strip() != "ready":
            raise SystemExit(f"error: a {work} job failed to load (exit {job.wait()})")
    for job in jobs:
        job.stdin.write("go\n")
        job.stdin.flush()
    seconds = [json.loads(job.stdout.readline())["seconds"] for job in jobs]
    for job in jobs:
        job.wait()
    return seconds


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", default="train", help="comma-separated subset of " + ",".join(WORKS))
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2, help="threads of a job that runs alone")
    parser.add_argument("--steps", type=int, default=6, help="training steps per job (16 windows each)")
    parser.add_argument("--prompts", type=int, default=96, help="test units answered per job")
    parser.add_argument("--batch-size", type=int, default=32, help="generation batch")
    parser.add_argument("--model", type=Path, help="a trained seq2seq run's model folder (for generate)")
    parser.add_argument("--small", action="store_true", help="random tiny model and data (seconds)")
    parser.add_argument("--child", choices=WORKS, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        child(args)
        return {}
    works = args.work.split(",")
    if not set(works) <= set(WORKS):
        parser.error(f"--work: choose from {','.join(WORKS)}")
    if "generate" in works and not (args.small or args.model):
        parser.error("--work generate needs --model RUN/model (or --small)")
    out = {}
    for work in works:
        alone = [run_jobs(work, args.threads, 1, args)[0] for _ in range(args.jobs)]
        together = run_jobs(work, 1, args.jobs, args)
        one_at_a_time, side_by_side = sum(alone), max(together)
        out[work] = {"one_at_a_time": one_at_a_time, "side_by_side": side_by_side}
        print(
            f"{work}: {args.jobs} jobs one at a time ({args.threads} thread(s) each) {one_at_a_time:.1f} s "
            f"({', '.join(f'{s:.1f}' for s in alone)}); side by side (1 thread each) {side_by_side:.1f} s "
            f"({', '.join(f'{s:.1f}' for s in together)}): side by side does {one_at_a_time / side_by_side:.2f}x "
            "the work per second"
        )
    return out


if __name__ == "__main__":
    main()

"""The real CLI end to end on random real-size checkpoints: for each family, a random-weight `save_pretrained`
folder of its REAL architecture (conf/model/*.yaml `arch`; `--small` shrinks it for the CPU) with a tokenizer of
its kind trained here by clinical_ner/models/tokenizer.py (no hub), then `python -m clinical_ner.train
scale=paper model.path=DIR` for token classification (LoRA), seq2seq (constrained and free) and QLoRA token
classification (`quantization=nf4`) with short budgets. One Markdown table: per run the phase timings (results.json
`timings`), training tokens/s, MFU, peak memory beside the planner's prediction (CUDA only) and new tokens/s of
generation.

    python -m clinical_ner.checks.gpu.e2e --families llama3_2,llama3_1 --budget-s 460 --out docs/gpu_e2e.md   # one GPU
    python -m clinical_ner.checks.gpu.e2e --small --families llama3_2 --threads 1 --out /tmp/gpu_e2e.md       # CPU

Runs that do not fit in `--budget-s` (wall seconds for everything, checkpoints included) are listed as skipped;
a run is stopped when the budget ends. Work folders (checkpoints of 6-16 GB at real size) live under `--work`
(default: a temporary folder) and are removed as soon as they are used.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, replace
from pathlib import Path

import torch

from clinical_ner.checks.gpu import device as gpu_common
from clinical_ner.config import compose_config
from clinical_ner.data.ner_corpus import load_ner_splits
from clinical_ner.models.backbone import kv_heads_at
from clinical_ner.models.tokenizer import load_or_train_tokenizer
from clinical_ner.planning import GiB, flops_per_token, plan_setup, setup_for
from clinical_ner.planning.measure import build_model
from clinical_ner.run.record.folder import RunFolder

ROOT = Path(__file__).resolve().parents[3]  # the checkout: the CLI runs from there
RUNS = {  # name -> what the run adds to the paper recipe of its approach
    "tokencls": ["approach=tokencls"],
    "seq2seq constrained": ["approach=seq2seq", "approach.decoding=constrained"],
    "seq2seq free": ["approach=seq2seq", "approach.decoding=free"],
    "tokencls QLoRA": ["approach=tokencls", "quantization=nf4"],
}
# --small: 4-bit CPU kernels need every quantized output a multiple of 32 (head_dim 32, one kv head at least)
SMALL = {"hidden_size": 128, "intermediate_size": 256, "num_layers": 2, "num_heads": 4}
PHASES = {  # table column -> results.json timings it sums
    "load": ("load_corpus", "load_tokenizer", "load_model"),
    "encode": ("encode",),
    "fit": ("fit",),
    "select": ("select",),
    "predict dev": ("predict_dev",),
    "predict test": ("predict_test",),
    "score": ("score_dev", "score_test"),
    "save": ("save",),
}


@dataclass
class Row:
    family: str
    run: str
    status: str
    wall: float | None = None
    timings: dict | None = None
    tokens_per_s: float | None = None
    mfu: float | None = None
    peak_gib: float | None = None
    planned_gib: float | None = None
    new_tokens_per_s: float | None = None


def arch_overrides(family: str, small: bool, vocab: int | None) -> list[str]:
    """`model.arch.*` of a `--small` checkpoint (the family's GQA ratio, tied embeddings and rope kept), so the
    planner sees what was built; none at real size. `vocab` replaces the real vocabulary size when given."""
    out = [f"model.arch.vocab_size={vocab}"] if vocab else []
    if not small:
        return out
    arch = compose_config([f"model={family}"]).model.arch
    kv = kv_heads_at(SMALL["num_heads"], arch.num_heads, arch.num_kv_heads)
    return out + [f"model.arch.{k}={v}" for k, v in SMALL.items()] + [f"model.arch.num_kv_heads={kv}"]


def data_overrides(args: argparse.Namespace) -> list[str]:
    """The corpus: the generated synthetic one (offline), or PharmaCoNER from `--data-root`."""
    return [f"data.root={args.data_root}"] if args.data_root else ["data=synthetic"]


def budget_overrides(args: argparse.Namespace, generates: bool) -> list[str]:
    """Short budgets: one epoch of `--train-docs` documents capped at `--max-steps`, `--eval-docs` per split,
    `--max-new-tokens` per answer when the run `generates` (only seq2seq has the setting)."""
    out = [
        f"trainer.max_steps={args.max_steps}",
        "trainer.max_epochs=1",
        f"data.train_limit={args.train_docs}",
    ]
    out += [f"data.eval_limit={args.eval_docs}"]
    out += [f"approach.max_new_tokens={args.max_new_tokens}"] if generates else []
    out += ["logger=csv", "trainer.enable_progress_bar=false"]
    return out + ([f"trainer.threads={args.threads}"] if args.threads else [])


def make_checkpoint(family: str, args: argparse.Namespace, folder: Path, device: torch.device) -> list[str]:
    """Save a random-weight causal LM of `family` and a tokenizer of its kind into `folder`; returns the
    `model.arch` overrides that describe it."""
    cfg = compose_config([f"model={family}", *data_overrides(args)])
    splits = load_ner_splits(cfg.data, Path(args.work) / "cache")
    texts = [doc.text for doc in splits["train"] + splits["dev"]]
    vocab = min(args.tokenizer_vocab, cfg.model.arch.vocab_size)
    tokenizer = load_or_train_tokenizer(cfg.model.tokenizer_kind, vocab, texts, Path(args.work) / "cache")
    # real size keeps the real vocabulary (the head's cost); --small sizes it to the tokenizer
    arch = arch_overrides(family, args.small, -(-len(tokenizer) // 64) * 64 if args.small else None)
    # a full-fine-tuning causal-LM setup: the plain model, in the recipe's bf16 weights
    overrides = [f"model={family}", "scale=paper", "approach=seq2seq", "approach.finetune=full", *arch]
    cfg = compose_config(overrides)
    model = build_model(cfg, setup_for(cfg, cuda=device.type == "cuda"), device)
    for name in ("pad_token_id", "bos_token_id", "eos_token_id"):
        setattr(model.config, name, getattr(tokenizer, name))
        setattr(model.generation_config, name, getattr(tokenizer, name))
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    del model
    gpu_common.free(device)  # the runs are other processes: give them the whole GPU
    return arch


def run_cli(overrides: list[str], run_dir: Path, timeout: float, env: dict) -> tuple[str, float]:
    """`python -m clinical_ner.train` with `overrides` in `run_dir` (output in `cli.log`): (status, wall s)."""
    run_dir.mkdir(parents=True)
    command = [sys.executable, "-m", "clinical_ner.train", *overrides, f"hydra.run.dir={run_dir}"]
    start = time.perf_counter()
    with open(run_dir / "cli.log", "w", encoding="utf-8") as log:
        try:
            proc = subprocess.run(
                command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, timeout=timeout
            )
            status = "ok" if proc.returncode == 0 else f"failed (exit {proc.returncode})"
        except subprocess.TimeoutExpired:
            status = f"stopped at the budget ({timeout:.0f} s)"
    return status, time.perf_counter() - start


def measured_row(family: str, run: str, status: str, wall: float, results: dict, cfg, device) -> Row:
    """The table row of a finished run: its results.json beside the planner's view of the same config."""
    row = Row(family, run, status, wall, results.get("timings", {}))
    if results.get("status") != "complete":
        row.status = f"failed: {results.get('error', '?')[:80]}" if results else status
        return row
    train, inference = results["train"], results.get("inference", {})
    setup = setup_for(cfg, cuda=device.type == "cuda")
    row.tokens_per_s = train["tokens_per_s"]
    sequences = train["steps"] * cfg.trainer.accumulate_grad_batches * cfg.data.batch_size
    if sequences and train["tokens"]:  # FLOPs at the mean real length (attention grows with it)
        length = max(1, round(train["tokens"] / sequences))
        peak = gpu_common.peak_flops(cfg, setup, device)
        flops = flops_per_token(replace(setup, length=min(length, setup.length))).train
        if setup.causal_lm:  # seq2seq trains with the LM head on answer positions only: not counted (a floor)
            flops -= 4 * setup.arch.vocab * setup.arch.hidden
        row.mfu = row.tokens_per_s * flops / peak if peak else None
    if device.type == "cuda":
        row.peak_gib = train["peak_memory_mb"] / 1024
        row.planned_gib = plan_setup(setup).tensors / GiB
    row.new_tokens_per_s = inference.get("new_tokens_per_s")
    return row


def _num(value: float | None, digits: int = 1) -> str:
    return "n/a" if value is None else f"{value:,.{digits}f}"


def line(row: Row) -> str:
    """One table row."""
    timings = row.timings or {}
    phases = [_num(sum(timings.get(k, 0.0) for k in keys)) if timings else "-" for keys in PHASES.values()]
    other = row.wall - sum(timings.values()) if row.wall is not None and timings else None
    cells = [row.family, row.run, row.status, *phases, _num(other), _num(row.wall)]
    # MFU in 3 significant digits: a CPU smoke run's 0.0004 must not print as 0.000
    mfu = "n/a" if row.mfu is None else f"{row.mfu:.3g}"
    cells += [_num(row.tokens_per_s, 0), mfu, _num(row.peak_gib), _num(row.planned_gib)]
    return "| " + " | ".join([*cells, _num(row.new_tokens_per_s)]) + " |"


def table_head() -> list[str]:
    """The table's header lines."""
    columns = ["family", "run", "status", *(f"{p} s" for p in PHASES), "other s", "wall s"]
    columns += ["train tokens/s", "MFU", "peak GiB", "planned GiB", "new tokens/s"]
    return ["| " + " | ".join(columns) + " |", "|" + " --- |" * 3 + " ---: |" * (len(columns) - 3)]


def markdown(rows: list[Row], head: list[str], settings: str) -> str:
    """The report: head, settings, the table, and what its columns mean."""
    notes = [
        "",
        "Phases from results.json `timings`; `other`: the rest of the process's wall time (interpreter start, "
        "imports, config, results). `make checkpoint` rows: building and saving the random checkpoint. MFU: "
        "training tokens/s (real tokens) x the planner's FLOPs per token at the mean trained length (seq2seq: "
        "without the LM head, which it applies to answer positions only) / the device's bf16 peak (on the CPU, the project's measured CPU peak). Peak: torch.cuda.max_memory_allocated "
        "over the whole run (training and generation); planned: the planner's training tensors "
        "(clinical_ner/planning). New tokens/s: answer tokens generated for test / `predict_test` seconds.",
    ]
    return "\n".join([*head, settings, "", *table_head(), *(line(r) for r in rows), *notes]) + "\n"


def run_family(family: str, args, device, env: dict, deadline: float) -> list[Row]:
    """The family's checkpoint and every run on it, within `deadline` (perf_counter seconds)."""
    work = Path(args.work)
    folder = work / f"{family}-checkpoint"
    if deadline - time.perf_counter() < args.min_run_s:
        return [Row(family, name, "skipped (budget)") for name in ["make checkpoint", *RUNS]]
    start = time.perf_counter()
    arch = make_checkpoint(family, args, folder, device)
    rows = [Row(family, "make checkpoint", "ok", time.perf_counter() - start)]
    print(line(rows[-1]), flush=True)
    for name, extra in RUNS.items():
        left = deadline - time.perf_counter()
        if left < args.min_run_s:
            rows.append(Row(family, name, "skipped (budget)"))
            continue
        overrides = [f"model={family}", "scale=paper", f"model.path={folder}", *extra, *arch]
        overrides += data_overrides(args) + budget_overrides(args, "approach=seq2seq" in extra)
        run_dir = work / "runs" / f"{family}-{name.replace(' ', '-')}"
        status, wall = run_cli(overrides, run_dir, min(left, args.run_timeout_s), env)
        folder_of_run = RunFolder(run_dir)
        path = folder_of_run.results
        results = json.loads(path.read_text()) if path.is_file() else {}
        rows.append(measured_row(family, name, status, wall, results, compose_config(overrides), device))
        print(line(rows[-1]), flush=True)
        if rows[-1].status != "ok":  # the table says that it failed; the run's log says why
            tail = (run_dir / "cli.log").read_text(errors="replace").splitlines()[-8:]
            print("\n".join(f"    {text}" for text in tail), flush=True)
        for heavy in (folder_of_run.model, folder_of_run.checkpoints):  # 16 GB copies at real size
            shutil.rmtree(heavy, ignore_errors=True)  # results.json stays
    shutil.rmtree(folder, ignore_errors=True)
    return rows


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--families", default="llama3_2,llama3_1", help=f"comma-separated, from {gpu_common.FAMILIES}"
    )
    parser.add_argument("--small", action="store_true", help="CPU: a 2-layer 128-wide model of each family")
    parser.add_argument("--budget-s", type=float, default=460.0, help="wall seconds for everything")
    parser.add_argument("--min-run-s", type=float, default=20.0, help="do not start a run with less left")
    parser.add_argument("--run-timeout-s", type=float, default=600.0, help="stop one run after this long")
    parser.add_argument("--max-steps", type=int, help="optimizer steps per run (default 30; --small 4)")
    parser.add_argument("--train-docs", type=int, help="training documents (default 32; --small 4)")
    parser.add_argument("--eval-docs", type=int, help="dev and test documents (default 8; --small 2)")
    parser.add_argument("--max-new-tokens", type=int, help="seq2seq answer length (default 64; --small 16)")
    parser.add_argument("--tokenizer-vocab", type=int, help="tokenizer entries (default 8000; --small 600)")
    parser.add_argument(
        "--data-root", help="PharmaCoNER folder (train/ dev/ test/); default: synthetic corpus"
    )
    parser.add_argument("--threads", type=int, help="trainer.threads of every run (CPU)")
    parser.add_argument("--work", help="work folder (default: a temporary one, removed at the end)")
    parser.add_argument("--out", type=Path, help="write the Markdown report here (e.g. docs/gpu_e2e.md)")
    args = parser.parse_args(argv)
    args.families = gpu_common.parse_families(parser, args.families)
    # few enough documents that the epoch ends within the steps: validation, checkpoint and selection run too
    defaults = (4, 4, 2, 16, 600) if args.small else (30, 32, 8, 64, 8000)
    names = ("max_steps", "train_docs", "eval_docs", "max_new_tokens", "tokenizer_vocab")
    for name, default in zip(names, defaults, strict=True):
        if getattr(args, name) is None:
            setattr(args, name, default)
    return args


def main(argv: list[str] | None = None) -> int:
    """Parse options, run every family within the budget, print (and with --out write) the report."""
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    found = gpu_common.device_for(args.small)
    if found is None:
        return 2
    device, device_name = found
    if args.threads:
        torch.set_num_threads(args.threads)
    deadline = time.perf_counter() + args.budget_s
    temporary = args.work is None
    args.work = args.work or tempfile.mkdtemp(prefix="gpu_e2e-")
    env = {**os.environ, "CLINICAL_NER_CACHE": str(Path(args.work) / "cache"), "HF_HUB_OFFLINE": "1"}
    env |= {"WANDB_MODE": "offline", "TOKENIZERS_PARALLELISM": "false"}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    head = gpu_common.report_head(
        "End to end: the CLI on random real-size checkpoints",
        device_name,
        "clinical_ner.checks.gpu.e2e",
        argv,
    )
    settings = (
        f"Per run: {args.max_steps} optimizer steps at most, one epoch of {args.train_docs} training documents, "
        f"{args.eval_docs} dev and test documents, {args.max_new_tokens} new tokens at most; "
        f"{'the synthetic corpus' if not args.data_root else 'PharmaCoNER'}; paper recipes (bf16, LoRA)."
    )
    print("\n".join([*head, settings, "", *table_head()]), flush=True)
    rows: list[Row] = []
    try:
        for family in args.families:
            rows += run_family(family, args, device, env, deadline)
    finally:
        if temporary:
            shutil.rmtree(args.work, ignore_errors=True)
    gpu_common.write_report(args.out, markdown(rows, head, settings))
    if args.out:
        print(f"wrote {args.out}")
    return 0 if all(r.status in ("ok", "skipped (budget)") for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())

"""Same numbers before and after a refactor: run three fast cases with one checkout's code, then compare two
such folders field by field.

    python -m clinical_ner.checks.compare_runs run /tmp/before --code /tmp/old_checkout   # runs the old code
    python -m clinical_ner.checks.compare_runs run /tmp/after                               # runs this checkout
    python -m clinical_ner.checks.compare_runs compare /tmp/before /tmp/after

Cases: token classification 30 steps (PharmaCoNER, $PHARMACONER_DIR), seq2seq with constrained decoding 20 steps
(5 dev/test documents; token classification 20), a 2-cell synthetic sweep (`-m seed=1,2`), and with `--only real` 4 steps
of the real-weights small recipe. Compared: every numeric field of each
`results.json` except wall-clock ones (timings, seconds, rates, memory), the sha256 of every file in `model/`
(weights, tokenizer, settings), and every prediction file byte for byte. Exit code 1 on any difference.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

from clinical_ner.run.record.folder import MODEL_DIR, PREDICTIONS_DIR, RESULTS_FILE

ROOT = Path(__file__).resolve().parents[2]  # the checkout this package sits in
# one thread: on a shared machine two threads per run contend badly, and the numbers must not depend on it
FAST = ["logger=csv", "trainer.enable_progress_bar=false", "trainer.threads=1"]
CASES = {
    "tokencls": ["approach=tokencls", "trainer.max_steps=30", "data.eval_limit=20", *FAST],
    "seq2seq": [
        "approach=seq2seq",
        "approach.decoding=constrained",
        "trainer.max_steps=20",
        "data.eval_limit=5",
        *FAST,
    ],
    "sweep": ["-m", "data=synthetic", "seed=1,2", "trainer.max_steps=5", *FAST],
    # real weights (packaged SmolLM2-135M, `make weights`): a few steps of the small recipe; not run by default
    "real": [
        "approach=tokencls",
        "model=smollm2",
        "scale=small",
        "trainer.max_steps=4",
        "data.eval_limit=5",
        *FAST,
    ],
}
DEFAULT_CASES = ["tokencls", "seq2seq", "sweep"]
# wall-clock and machine-dependent fields: they differ between any two runs of the same code
VOLATILE = ("timings", "seconds", "_per_s", "peak_memory", "rss", "throughput", "mfu", "peak_tflops", "gemm")
VOLATILE_PATHS = ("config.output_dir", "config.cache_dir")


def run_cases(out: Path, code: Path, only: list[str]) -> None:
    """Run each case with the package found in `code` (first on PYTHONPATH), into out/<case>."""
    env = {**os.environ, "PYTHONPATH": str(code), "WANDB_MODE": "offline", "TOKENIZERS_PARALLELISM": "false"}
    for name in only:
        args = CASES[name]
        folder = out / name
        where = f"hydra.sweep.dir={folder}" if "-m" in args else f"hydra.run.dir={folder}"
        command = [sys.executable, "-m", "clinical_ner.train", *args, where]
        print("+", " ".join(command), flush=True)
        subprocess.run(command, cwd=code, env=env, check=True)


def numbers(tree, prefix: str = "") -> dict[str, float]:
    """Every numeric leaf of a JSON tree, keyed by its dotted path (volatile ones left out)."""
    found: dict[str, float] = {}
    if isinstance(tree, dict):
        items = tree.items()
    elif isinstance(tree, list):
        items = enumerate(tree)
    else:
        if isinstance(tree, int | float) and not isinstance(tree, bool):
            found[prefix] = tree
        return found
    for key, value in items:
        path = f"{prefix}.{key}" if prefix else str(key)
        if any(part in str(key) for part in VOLATILE) or path in VOLATILE_PATHS:
            continue
        found.update(numbers(value, path))
    return found


def _files(folder: Path) -> dict[str, str]:
    """sha256 of every file under `folder`, keyed by relative path."""
    return {
        str(path.relative_to(folder)): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(folder.rglob("*"))
        if path.is_file()
    }


def compare(before: Path, after: Path) -> list[str]:
    """The differences between two `run` folders, one line each (empty: identical)."""
    differences: list[str] = []
    old_results = {p.relative_to(before) for p in before.rglob(RESULTS_FILE)}
    new_results = {p.relative_to(after) for p in after.rglob(RESULTS_FILE)}
    if old_results != new_results:
        differences.append(f"results.json sets differ: {sorted(map(str, old_results ^ new_results))}")
    for rel in sorted(old_results & new_results):
        old = json.loads((before / rel).read_text())
        new = json.loads((after / rel).read_text())
        if old.get("status") != new.get("status"):
            differences.append(f"{rel}: status {old.get('status')} != {new.get('status')}")
        a, b = numbers(old), numbers(new)
        for key in sorted(a.keys() | b.keys()):
            if a.get(key) != b.get(key):
                differences.append(f"{rel}: {key} {a.get(key)} != {b.get(key)}")
        run = rel.parent
        for sub in (MODEL_DIR, PREDICTIONS_DIR):
            fa, fb = _files(before / run / sub), _files(after / run / sub)
            for key in sorted(fa.keys() | fb.keys()):
                if fa.get(key) != fb.get(key):
                    differences.append(f"{run}/{sub}/{key}: files differ")
    return differences


def main(argv: list[str] | None = None) -> int:
    """`run OUT [--code DIR] [--only CASE ...]` or `compare BEFORE AFTER`."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run the cases into OUT")
    run.add_argument("out", type=Path)
    run.add_argument(
        "--code", type=Path, default=ROOT, help="checkout whose clinical_ner runs (default: this one)"
    )
    run.add_argument(
        "--only",
        nargs="+",
        choices=sorted(CASES),
        default=DEFAULT_CASES,
        help="cases (default: %(default)s; `real` needs `make weights`)",
    )
    cmp = sub.add_parser("compare", help="compare two run folders")
    cmp.add_argument("before", type=Path)
    cmp.add_argument("after", type=Path)
    args = parser.parse_args(argv)
    if args.command == "run":
        run_cases(args.out.resolve(), args.code.resolve(), args.only)
        return 0
    differences = compare(args.before, args.after)
    for line in differences:
        print(line)
    checked = len(list(args.before.rglob(RESULTS_FILE)))
    print(f"{'identical' if not differences else f'{len(differences)} differences'} ({checked} results.json)")
    return 1 if differences else 0


if __name__ == "__main__":
    sys.exit(main())

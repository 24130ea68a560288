"""Same seed, same numbers? Train one small token-classification run several times under different CPU settings
(threads, kernel choices) and compare the trained weights and dev F1 with the first run.

Each variant runs in its own process (kernel choices are read when torch loads). The kernel variants stand in for
another machine's CPU: `ATEN_CPU_CAPABILITY` picks torch's own vectorised kernels (norms, softmax, activations),
`ONEDNN_MAX_CPU_ISA` the oneDNN kernels behind bf16 matmuls, `MKL_CBWR` MKL's fp32 GEMM code path.

    python -m clinical_ner.checks.determinism --out /tmp/determinism.json            # tiny random model, 30 steps
    python -m clinical_ner.checks.determinism --extra model=smollm2 scale=small data.train_limit=16 --steps 3
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from clinical_ner.run.record.folder import RunFolder

ROOT = Path(__file__).resolve().parents[2]  # the checkout this package sits in
VARIANTS = {
    "baseline (2 threads)": ({}, 2),
    "baseline again": ({}, 2),
    "1 thread": ({}, 1),
    "ATEN_CPU_CAPABILITY=default": ({"ATEN_CPU_CAPABILITY": "default"}, 2),
    "ONEDNN_MAX_CPU_ISA=SSE41": ({"ONEDNN_MAX_CPU_ISA": "SSE41"}, 2),
    "MKL_CBWR=COMPATIBLE": ({"MKL_CBWR": "COMPATIBLE"}, 2),
}
SMALL = ["scale.hidden_size=64", "scale.num_layers=2", "scale.intermediate_size=128", "scale.vocab_size=600"]


def train(folder: Path, env: dict, threads: int, steps: int, extra: list[str], cache: Path) -> dict:
    """One run of the CLI into `folder`; its results.json."""
    command = [sys.executable, "-m", "clinical_ner.train", "logger=none", "save_model=false"]
    command += [
        f"trainer.max_steps={steps}",
        f"trainer.threads={threads}",
        "trainer.enable_progress_bar=false",
    ]
    command += [f"hydra.run.dir={folder}", *extra]
    environment = {**os.environ, **env, "CLINICAL_NER_CACHE": str(cache)}
    done = subprocess.run(command, cwd=ROOT, env=environment, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"{folder.name}: exit {done.returncode}\n{done.stderr[-2000:]}")
    return json.loads(RunFolder(folder).results.read_text())


def weights(folder: Path) -> dict:
    """The model's state dict from the run's last checkpoint."""
    import torch

    return torch.load(RunFolder(folder).last_checkpoint, map_location="cpu", weights_only=True)["state_dict"]


def compare(first: dict, other: dict) -> tuple[bool, float]:
    """(bitwise equal, largest absolute difference) over every tensor."""
    largest = max(float((first[k].float() - other[k].float()).abs().max()) for k in first)
    return largest == 0.0, largest


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--extra", nargs="*", default=["data=synthetic", "data.batch_size=8", *SMALL])
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory(prefix="determinism-") as tmp:
        tmp = Path(tmp)
        baseline = None
        for number, (name, (env, threads)) in enumerate(VARIANTS.items()):
            folder = tmp / f"run-{number}"
            results = train(folder, env, threads, args.steps, args.extra, tmp / "cache")
            state = weights(folder)
            baseline = baseline or state
            equal, largest = compare(baseline, state)
            row = {"variant": name, "bitwise_equal": equal, "max_abs_diff": largest}
            row |= {"dev_f1": results["dev"]["f1"], "test_f1": results["test"]["f1"]}
            rows.append(row)
            print(json.dumps(row), flush=True)
            RunFolder(folder).last_checkpoint.unlink()  # keep /tmp small between variants
    if args.out:
        args.out.write_text(json.dumps(rows, indent=2) + "\n")


if __name__ == "__main__":
    main()

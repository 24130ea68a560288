"""The GPU checks of docs/gpu_check.md as one command, each part within its own time cap.

About 9 minutes on one H200: training MFU at real size (checks.gpu.mfu), our decoder against generate /
generate_batch (checks.gpu.decode), and the real CLI on random real-size checkpoints (checks.gpu.e2e). Each part has its own time cap, so one slow part cannot hide the
others; each writes its table and log into OUT_DIR.

    python -m clinical_ner.checks.gpu OUT_DIR [TOTAL_SECONDS]       (default 540)
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

PACKAGE = "clinical_ner.checks.gpu"
CHECKOUT = Path(__file__).resolve().parents[3]  # each part imports the package from the same checkout


def run_part(out: Path, name: str, cap_s: float, args: list[str], start: float) -> None:
    """Run one check module for at most `cap_s` seconds (TERM, then KILL 10 s later), log to OUT/NAME.log."""
    if cap_s <= 0:
        print(f"== {name} skipped: no time left")
        return
    print(f"== {name} (cap {cap_s:.0f}s, {time.monotonic() - start:.0f}s used)", flush=True)
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "TOKENIZERS_PARALLELISM": "false", "HF_HUB_OFFLINE": "1"}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(CHECKOUT), os.environ.get("PYTHONPATH")]))
    log_path = out / f"{name}.log"
    with log_path.open("w") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", *args], stdout=log, stderr=subprocess.STDOUT, env=env
        )
        try:
            code = process.wait(timeout=cap_s)
        except subprocess.TimeoutExpired:
            process.terminate()
            try:
                code = process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                code = process.wait()
    print(f"== {name} exit {code} after {time.monotonic() - start:.0f}s")
    print("\n".join([line for line in log_path.read_text().splitlines() if line.startswith("|")][-40:]))


def device_line() -> str:
    """The GPU's name, memory and driver from nvidia-smi ('' without one)."""
    query = ["nvidia-smi", "--query-gpu=name,memory.total,driver_version", "--format=csv,noheader"]
    try:
        return subprocess.run(query, capture_output=True, text=True, check=False).stdout
    except OSError:
        return ""


def main(argv: list[str] | None = None) -> int:
    """Run MFU, decoding and end-to-end checks within TOTAL_SECONDS, each part's report into OUT_DIR."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path, help="folder for every part's table (.md) and log")
    parser.add_argument("total_s", type=float, nargs="?", default=540.0, help="wall seconds for everything")
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    out, start = args.out, time.monotonic()
    out.mkdir(parents=True, exist_ok=True)
    device = device_line()
    print(device, end="")
    (out / "device.txt").write_text(device)
    mfu = f"{PACKAGE}.mfu"
    run_part(out, "mfu", 170, [mfu, "--families", "llama3_1", "--out", str(out / "gpu_mfu.md")], start)
    run_part(
        out,
        "mfu3b",
        60,
        [mfu, "--families", "llama3_2", "--no-compile", "--out", str(out / "gpu_mfu_3b.md")],
        start,
    )
    decode = [f"{PACKAGE}.decode", "--family", "llama3_1", "--out", str(out / "gpu_decode.md")]
    run_part(out, "decode", 130, decode, start)
    budget = args.total_s - (time.monotonic() - start) - 15  # what is left, less a margin for the report
    e2e = [
        f"{PACKAGE}.e2e",
        "--families",
        "llama3_1",
        "--budget-s",
        f"{budget:.0f}",
        "--run-timeout-s",
        "100",
    ]
    run_part(out, "e2e", budget + 10, [*e2e, "--out", str(out / "gpu_e2e.md")], start)
    print(f"== done after {time.monotonic() - start:.0f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())

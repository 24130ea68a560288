"""benchmarks/bench_concurrency.py: jobs one at a time against jobs side by side, behind a start barrier."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def bench():
    sys.path.insert(0, str(ROOT / "benchmarks"))  # it imports bench_real_weights beside it
    spec = importlib.util.spec_from_file_location(
        "bench_concurrency", ROOT / "benchmarks" / "bench_concurrency.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    yield module
    sys.path.remove(str(ROOT / "benchmarks"))


def test_both_arrangements_do_the_same_jobs(bench, capsys):
    out = bench.main(["--small", "--work", "generate", "--jobs", "2", "--threads", "1", "--prompts", "4"])
    row = out["generate"]
    assert row["one_at_a_time"] > 0 and row["side_by_side"] > 0
    printed = capsys.readouterr().out
    assert "2 jobs one at a time (1 thread(s) each)" in printed and "the work per second" in printed


def test_a_job_that_cannot_load_ends_the_run_with_one_line(bench, tmp_path):
    with pytest.raises(SystemExit, match="error: a generate job failed to load"):
        bench.main(
            ["--work", "generate", "--jobs", "1", "--model", str(tmp_path / "no-such-run"), "--prompts", "2"]
        )


def test_generation_needs_a_run(bench):
    with pytest.raises(SystemExit):
        bench.main(["--work", "generate"])

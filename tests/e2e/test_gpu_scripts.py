"""clinical_ner.checks.gpu.mfu and .decode at --small size on the CPU: every case measured, and our
decoder's free answers identical to `model.generate` on the same prompts."""

from __future__ import annotations

from pathlib import Path

import pytest

from clinical_ner.checks.gpu import decode as gpu_decode
from clinical_ner.checks.gpu import mfu as gpu_mfu


def table(path: Path) -> list[list[str]]:
    lines = [r for r in path.read_text().splitlines() if r.startswith("| ") and not r.startswith("| ---")]
    return [[c.strip() for c in r.split("|")[1:-1]] for r in lines[1:]]


@pytest.mark.slow
def test_mfu_small_measures_every_case(tmp_path):
    out = tmp_path / "mfu.md"
    argv = ["--small", "--families", "llama3_2", "--steps", "1", "--no-compile", "--out", str(out)]
    assert gpu_mfu.main(argv) == 0
    rows = table(out)
    assert len(rows) == sum(not c.compiled for c in gpu_mfu.CASES)
    assert all(float(r[2].replace(",", "")) > 0 and 0 < float(r[3]) < 1 for r in rows), rows


@pytest.mark.slow
def test_decode_small_free_answers_equal_generate(tmp_path):
    out = tmp_path / "decode.md"
    argv = ["--small", "--no-batch-api", "--cache", str(tmp_path / "cache"), "--out", str(out)]
    assert gpu_decode.main(argv) == 0
    rows = {(r[0], r[3]): r for r in table(out)}
    for unit in ("sentence", "document"):
        free = rows[(unit, "ours, free")]
        assert free[4] == rows[(unit, "generate (static batches)")][4]  # same number of new tokens
        assert free[9] == f"{free[1]}/{free[1]}"  # every answer identical to generate's
        assert int(rows[(unit, "ours, constrained")][4]) > 2 * int(free[1])  # entities written, not `[]`

"""clinical_ner.checks.gpu.e2e at --small size on the CPU: the real CLI runs every approach on a random checkpoint of a
family's architecture and the report has a complete row per run."""

from __future__ import annotations

import json

import pytest

from clinical_ner.checks.gpu import e2e as gpu_e2e

RUNS = ["make checkpoint", "tokencls", "seq2seq constrained", "seq2seq free", "tokencls QLoRA"]


def test_unknown_family_and_missing_gpu_are_refused(capsys):
    with pytest.raises(SystemExit):
        gpu_e2e.main(["--families", "llama9"])
    assert "unknown families" in capsys.readouterr().err


@pytest.mark.slow
def test_small_run_on_cpu_reports_every_run(tmp_path):
    pytest.importorskip("bitsandbytes")
    out, work = tmp_path / "gpu_e2e.md", tmp_path / "work"
    argv = ["--small", "--families", "llama3_2", "--threads", "1", "--work", str(work), "--out", str(out)]
    assert gpu_e2e.main(argv) == 0
    rows = [
        [c.strip() for c in r.split("|")[1:-1]]
        for r in out.read_text().splitlines()
        if r.startswith("| llama")
    ]
    assert [r[1] for r in rows] == RUNS and all(r[2] == "ok" for r in rows)
    header = next(r for r in out.read_text().splitlines() if r.startswith("| family"))
    columns = [c.strip() for c in header.split("|")[1:-1]]
    for row in rows[1:]:
        cells = dict(zip(columns, row, strict=True))
        phases = [float(cells[f"{p} s"]) for p in gpu_e2e.PHASES]
        # other = wall - phases, up to the rounding of ten one-decimal cells
        total = sum(phases) + float(cells["other s"])
        assert all(v >= 0 for v in phases) and total == pytest.approx(float(cells["wall s"]), abs=0.5)
        assert float(cells["train tokens/s"].replace(",", "")) > 0 and float(cells["MFU"]) > 0
        assert cells["peak GiB"] == cells["planned GiB"] == "n/a"  # CUDA only
        generates = row[1].startswith("seq2seq")
        assert (cells["new tokens/s"] != "n/a") == generates
    for run in RUNS[1:]:  # the runs' own records, the heavy folders gone
        run_dir = work / "runs" / f"llama3_2-{run.replace(' ', '-')}"
        results = json.loads((run_dir / "results.json").read_text())
        assert results["status"] == "complete" and results["train"]["best_checkpoint"]  # it validated
        assert not (run_dir / "model").exists() and not (run_dir / "checkpoints").exists()
    assert not (work / "llama3_2-checkpoint").exists()

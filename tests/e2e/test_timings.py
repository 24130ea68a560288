"""Phase timings: the recorder's rules, and `timings` in the results.json of a real CLI run."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from clinical_ner.training.timings import PhaseTimes, phase, recording

ROOT = Path(__file__).resolve().parents[2]
SMALL = ["scale.hidden_size=64", "scale.num_layers=2", "scale.intermediate_size=128"]
TOKENCLS_PHASES = [
    "load_corpus",
    "load_tokenizer",
    "load_model",
    "encode",
    "fit",
    "select",
    "predict_dev",
    "score_dev",
    "predict_test",
    "score_test",
    "save",
]


def test_phases_add_up_in_every_open_recorder():
    outer = PhaseTimes()
    with recording(outer):
        with phase("a") as a:
            time.sleep(0.02)
        with recording() as inner:
            with phase("b"):
                time.sleep(0.01)
            with phase("b"):  # a repeated phase adds up
                time.sleep(0.01)
    assert list(outer.seconds) == ["a", "b"] and list(inner.seconds) == ["b"]
    assert a.seconds >= 0.02 and outer.seconds["a"] == a.seconds
    assert outer.seconds["b"] == inner.seconds["b"] >= 0.02
    assert outer.total == pytest.approx(outer.seconds["a"] + outer.seconds["b"])
    with phase("c"):  # outside any recorder: timed and logged, recorded nowhere
        pass
    assert "c" not in outer.seconds


def test_nested_phases_are_refused_and_a_failing_phase_still_counts():
    with recording() as times:
        with phase("outer"), pytest.raises(RuntimeError, match="do not nest"), phase("inner"):
            pass
        with pytest.raises(ValueError), phase("failing"):
            raise ValueError("boom")
    assert set(times.seconds) == {"outer", "failing"}


@pytest.mark.slow
def test_cli_run_records_every_phase_within_its_wall_time(tmp_path):
    run_dir = tmp_path / "run"
    command = [sys.executable, "-m", "clinical_ner.train", "data=synthetic", "logger=csv"]
    command += ["trainer.max_steps=3", "trainer.threads=1", "trainer.enable_progress_bar=false", *SMALL]
    command += [f"hydra.run.dir={run_dir}"]
    env = {**os.environ, "CLINICAL_NER_CACHE": str(tmp_path / "cache"), "PYTHONPATH": str(ROOT)}
    start = time.perf_counter()
    proc = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    wall = time.perf_counter() - start
    assert proc.returncode == 0, proc.stderr[-2000:]
    timings = json.loads((run_dir / "results.json").read_text())["timings"]
    assert list(timings) == TOKENCLS_PHASES
    assert all(isinstance(v, float) and v >= 0 for v in timings.values())
    assert 0 < sum(timings.values()) <= wall
    logged = (run_dir / "train.log").read_text()
    assert all(f"phase {name}: " in logged for name in TOKENCLS_PHASES)  # one line as each phase ends

"""Short runs through the real entry point that must finish (or refuse cleanly) on the synthetic corpus."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from composing import MICRO, compose_train

from clinical_ner.errors import UserError
from clinical_ner.run.pipeline import run

CONF = Path(__file__).resolve().parents[2] / "conf"
QUIET = ["data=synthetic", "logger=csv", "trainer.threads=1", "trainer.enable_progress_bar=false"]
SMALL = [*MICRO, "scale.vocab_size=1000"]
SEQ2SEQ = ["approach=seq2seq", "approach.max_new_tokens=24", "data.eval_limit=4", "approach.val_limit=2"]


def train(tmp_path: Path, overrides: list[str]) -> dict:
    return run(compose_train([*QUIET, *SMALL, f"output_dir={tmp_path}", *overrides]))


@pytest.fixture
def cache(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv("CLINICAL_NER_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


@pytest.mark.slow
@pytest.mark.parametrize("approach", [[], SEQ2SEQ], ids=["tokencls", "seq2seq"])
def test_max_steps_before_first_validation_with_early_stopping(tmp_path, cache, approach):
    # 5 steps end inside the first epoch: no validation ran when training stops
    results = train(tmp_path / "run", [*approach, "trainer.max_steps=5", "trainer.early_stopping_patience=2"])
    assert results["status"] == "complete" and results["train"]["steps"] == 5
    assert results["train"]["best_epoch"] is None  # the final weights were kept
    assert isinstance(results["selection"]["f1"], float)  # ... and scored by a validation at the end
    assert results["test"]["documents"] > 0


@pytest.mark.slow
@pytest.mark.parametrize("approach", [[], SEQ2SEQ], ids=["tokencls", "seq2seq"])
def test_dev_scores_every_document_and_selection_has_its_own_key(tmp_path, cache, approach):
    results = train(tmp_path / "run", [*approach, "trainer.max_steps=11"])  # one epoch: validated once
    assert results["dev"]["documents"] == (4 if approach else 20)  # every dev document
    assert results["selection"]["documents"] == (2 if approach else 20)  # seq2seq: approach.val_limit
    assert results["selection"]["epoch"] == 0 and isinstance(results["selection"]["f1"], float)
    assert len(list((tmp_path / "run" / "predictions" / "dev").glob("*.ann"))) == results["dev"]["documents"]


def cli(tmp_path: Path, overrides: list[str]) -> subprocess.CompletedProcess:
    """`python -m clinical_ner.train` as a user runs it."""
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "clinical_ner.train",
            *QUIET,
            *SMALL,
            f"hydra.run.dir={tmp_path / 'run'}",
            *overrides,
        ],
        capture_output=True,
        text=True,
        env={**os.environ, "CLINICAL_NER_CACHE": str(tmp_path / "cache")},
    )


def one_error_line(proc: subprocess.CompletedProcess) -> str:
    assert proc.returncode == 2, proc.stderr[-2000:]
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "Traceback" not in proc.stderr
    return errors[0]


@pytest.mark.slow
def test_seq2seq_without_a_short_enough_example_refuses_to_train(tmp_path):
    error = one_error_line(
        cli(tmp_path, ["approach=seq2seq", "approach.max_length=8", "trainer.max_steps=2"])
    )
    assert "nothing to train on" in error and "approach.max_length=8" in error and "keeps 99%" in error
    record = json.loads((tmp_path / "run" / "results.json").read_text())
    assert record["status"] == "failed"


@pytest.mark.slow
def test_a_training_split_without_a_window_refuses_to_train(tmp_path, cache):
    corpus = tmp_path / "corpus"
    subprocess.run(
        [sys.executable, "-m", "clinical_ner.data.synthetic", "--out", str(corpus), "--n-train", "2"],
        check=True,
        capture_output=True,
    )
    for txt in (corpus / "train").glob("*.txt"):  # blank documents give no token, hence no window
        txt.write_text("\n", encoding="utf-8")
        txt.with_suffix(".ann").write_text("", encoding="utf-8")
    with pytest.raises(UserError, match="nothing to train on"):
        train(tmp_path / "run", [f"data.root={corpus}", "trainer.max_steps=2"])

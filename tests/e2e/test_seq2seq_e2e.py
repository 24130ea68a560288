"""A tiny seq2seq run through the real entry point (synthetic corpus), then `predict` on the saved run."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from composing import MICRO, compose_train

from clinical_ner.data.synthetic import synthetic_splits
from clinical_ner.metrics.span_scorer import parse_official_ann
from clinical_ner.predict import main as predict_main
from clinical_ner.run.pipeline import run

CONF = Path(__file__).resolve().parents[2] / "conf"
TINY = [*MICRO, "scale.vocab_size=1000"]
TEST_KEYS = {
    "precision",
    "recall",
    "f1",
    "json_parse_rate",
    "hallucination_rate",
    "hallucination_rate_micro",
    "boundary_accuracy",
    "boundary_accuracy_matched",
    "boundary_accuracy_micro",
    "format_compliance",
    "format_compliance_corrected",
    "documents_per_s",
}


@pytest.mark.slow
def test_seq2seq_run_writes_results_predictions_and_serves_predict(tmp_path, monkeypatch):
    monkeypatch.setenv("CLINICAL_NER_CACHE", str(tmp_path / "cache"))
    run_dir = tmp_path / "run"
    overrides = [
        "approach=seq2seq",
        "approach.decoding=constrained",
        "approach.max_new_tokens=40",
        "approach.val_limit=2",
        "data=synthetic",
        "data.train_limit=12",
        "data.eval_limit=4",
        "trainer.max_steps=4",
        "data.batch_size=8",
        "logger=none",
        "trainer.enable_progress_bar=false",
        "trainer.threads=1",
        f"output_dir={run_dir}",
        *TINY,
    ]
    results = run(compose_train(overrides))
    assert results["status"] == "complete" and results["approach"] == "seq2seq"
    assert set(results["test"]) >= TEST_KEYS
    assert results["test"]["json_parse_rate"] == 1.0 and results["test"]["hallucination_rate"] == 0.0
    assert results["train"]["steps"] == 4
    assert {"fit", "predict_dev", "predict_test", "score_test", "save"} <= set(results["timings"])
    assert results["inference"]["new_tokens"] > 0
    assert results["inference"]["new_tokens_per_s"] == pytest.approx(
        results["inference"]["new_tokens"] / results["timings"]["predict_test"]
    )
    written = sorted((run_dir / "predictions" / "test").glob("*.ann"))
    assert len(written) == 4

    inputs = tmp_path / "inputs"
    inputs.mkdir()
    for doc in synthetic_splits()["test"][:4]:
        (inputs / f"{doc.id}.txt").write_text(doc.text, encoding="utf-8")
    predict_main([str(run_dir), str(inputs), "--out", str(tmp_path / "out"), "--threads", "1"])
    for ann in written:  # the reloaded model answers exactly as the run did
        assert parse_official_ann(tmp_path / "out" / ann.name) == parse_official_ann(ann)
    assert os.path.isfile(run_dir / "model" / "clinical_ner.json")

"""Tiny end-to-end runs through the real entry point: synthetic corpus, real PharmaCoNER classes, all families."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from composing import compose_train

from clinical_ner.data.synthetic import synthetic_splits
from clinical_ner.data.types import Document
from clinical_ner.metrics.span_scorer import parse_official_ann
from clinical_ner.predict import tag_documents
from clinical_ner.run.pipeline import run

CONF = Path(__file__).resolve().parents[2] / "conf"
QUIET = ["logger=none", "trainer.enable_progress_bar=false", "trainer.threads=2"]
SMALL = ["scale.hidden_size=64", "scale.num_layers=2", "scale.intermediate_size=128"]  # seconds, not minutes


@pytest.fixture(scope="session")
def cache(tmp_path_factory) -> Path:
    """One tokenizer cache for the whole session: each family's tokenizer is trained once."""
    path = tmp_path_factory.mktemp("cache")
    os.environ["CLINICAL_NER_CACHE"] = str(path)
    return path


def train(tmp_path: Path, overrides: list[str]) -> dict:
    return run(compose_train([*QUIET, f"output_dir={tmp_path}", *overrides]))


@pytest.mark.slow
def test_synthetic_run_learns_and_reloads_exactly(tmp_path, cache, caplog):
    caplog.set_level("INFO", logger="clinical_ner.training.stage")
    results = train(
        tmp_path,
        ["data=synthetic", "trainer.max_epochs=20", "data.batch_size=8", "optim.lr=3e-3", *SMALL],
    )
    assert results["status"] == "complete"
    assert results["test"]["f1"] >= 0.8, results["test"]
    for split in ("dev", "test"):  # each split's scores are logged as soon as it is scored
        assert (
            f"{split}: F1 {results[split]['f1']:.4f}, precision {results[split]['precision']:.4f}"
            in caplog.text
        )
    assert set(results["test"]["per_type"]) == {"DOSIS", "FARMACO", "SINTOMA"}
    test_files = sorted((tmp_path / "predictions" / "test").glob("*.ann"))
    assert len(test_files) == 20
    # the saved model, reloaded through from_pretrained, predicts exactly what the run predicted
    docs = [Document(d.id, d.text) for d in synthetic_splits()["test"]]
    reloaded = tag_documents(tmp_path / "model", docs)
    for doc in docs:
        written = parse_official_ann(tmp_path / "predictions" / "test" / f"{doc.id}.ann")
        assert {(s.type, s.start, s.end) for s in reloaded[doc.id]} == written
    assert sum(len(s) for s in reloaded.values()) > 0


@pytest.mark.slow
@pytest.mark.parametrize("model", ["llama2", "llama3", "llama3_1", "llama3_2"])
def test_every_family_runs_on_real_classes(tmp_path, cache, pharmaconer_dir, model):
    results = train(
        tmp_path,
        [
            f"model={model}",
            f"data.root={pharmaconer_dir}",
            "trainer.max_steps=5",
            "data.train_limit=20",
            "data.eval_limit=5",
            *SMALL,
        ],
    )
    assert results["status"] == "complete"
    assert results["train"]["steps"] == 5
    assert set(results["test"]["per_type"]) >= {"NORMALIZABLES", "PROTEINAS"}
    assert len(list((tmp_path / "predictions" / "test").glob("*.ann"))) == 5
    saved = json.loads((tmp_path / "model" / "config.json").read_text())
    assert saved["is_causal"] is False
    assert len(saved["id2label"]) == 9  # O + B/I x 4 PharmaCoNER types


def write_bad_corpus(root: Path, kind: str) -> Path:
    """A valid synthetic corpus with one defect of the given kind in train/; returns the broken file."""
    subprocess.run(
        [
            sys.executable,
            "-m",
            "clinical_ner.data.synthetic",
            "--out",
            str(root),
            "--n-train",
            "3",
            "--n-dev",
            "2",
            "--n-test",
            "2",
        ],
        check=True,
        capture_output=True,
    )
    txt = sorted((root / "train").glob("*.txt"))[0]
    ann = txt.with_suffix(".ann")
    if kind == "undecodable":
        txt.write_bytes(b"Paciente con \xff\xfe fiebre.\n")
        return txt
    lines = ann.read_text(encoding="utf-8").splitlines()
    mention_id, rest = lines[0].split("\t", 1)
    fields = rest.split("\t")
    label, start, end = fields[0].split()
    broken = {
        "malformed": f"{mention_id}\t{label} {start}",
        "non_integer": f"{mention_id}\t{label} {start} x{end}\t{fields[1]}",
        "out_of_range": f"{mention_id}\t{label} {start} 999999\t{fields[1]}",
        "garbage": "garbage line without tabs",
    }[kind]
    ann.write_text("\n".join([broken, *lines[1:]]) + "\n", encoding="utf-8")
    return ann


@pytest.mark.parametrize("kind", ["malformed", "non_integer", "out_of_range", "garbage", "undecodable"])
def test_bad_input_gives_one_line_error(tmp_path, kind):
    broken = write_bad_corpus(tmp_path / "corpus", kind)
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "clinical_ner.train",
            "data=synthetic",
            f"data.root={tmp_path / 'corpus'}",
            "logger=none",
            f"hydra.run.dir={tmp_path / 'run'}",
        ],
        capture_output=True,
        text=True,
        env={**os.environ, "CLINICAL_NER_CACHE": str(tmp_path / "cache")},
    )
    assert proc.returncode == 2
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "Traceback" not in proc.stderr
    assert str(broken) in errors[0]
    if kind != "undecodable":
        assert f"{broken}:1" in errors[0]  # names the line
    record = json.loads((tmp_path / "run" / "results.json").read_text())
    assert record["status"] == "failed" and record["error"] == errors[0].removeprefix("error: ")


@pytest.mark.slow
def test_resume_from_last_checkpoint(tmp_path, cache):
    """4 steps stop mid-epoch (the epoch has more batches); resumed to 8 steps it trains the batches after them
    (the same tokens as 8 steps in one go) and reports the whole training's cost."""
    overrides = [
        "data=synthetic",
        "data.batch_size=8",
        "save_model=false",
        "approach.token_dropout=0.1",
        *SMALL,
    ]
    whole = train(tmp_path / "whole", [*overrides, "trainer.max_steps=8"])
    first = train(tmp_path / "cut", [*overrides, "trainer.max_steps=4"])
    assert first["train"]["steps"] == 4 and (tmp_path / "cut" / "checkpoints" / "last.ckpt").is_file()
    loops = torch.load(tmp_path / "cut" / "checkpoints" / "last.ckpt", weights_only=True)["loops"]["fit_loop"]
    assert not loops["epoch_loop.batch_progress"]["is_last_batch"]  # stopped inside the first epoch
    resumed = train(tmp_path / "cut", [*overrides, "trainer.max_steps=8", "ckpt_path=last"])
    assert resumed["train"]["steps"] == 8
    # tokens and seconds count the part before the resume too
    assert resumed["train"]["tokens"] == whole["train"]["tokens"]
    assert resumed["train"]["seconds"] > first["train"]["seconds"]
    # (the weights differ: the first part's schedule spanned 4 steps, the whole run's 8; the resume-equality
    # test with the schedule unchanged is tests/test_checkpoints.py)


@pytest.mark.slow
def test_wandb_offline_run_holds_no_document_text(tmp_path, cache, monkeypatch):
    monkeypatch.delenv("WANDB_MODE", raising=False)
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    quiet = ["logger=wandb", "trainer.enable_progress_bar=false", f"output_dir={tmp_path}"]
    cfg = compose_train([*quiet, "data=synthetic", "trainer.max_steps=3", *SMALL])
    assert run(cfg)["status"] == "complete"
    runs = list((tmp_path / "wandb").glob("offline-run-*"))
    assert len(runs) == 1
    sentences = [
        line for doc in synthetic_splits()["train"][:20] for line in doc.text.split(". ") if len(line) > 25
    ]
    blob = b"".join(p.read_bytes() for p in runs[0].rglob("*") if p.is_file())
    assert not any(s.encode() in blob for s in sentences)


@pytest.mark.slow
def test_same_seed_same_numbers(tmp_path, cache):
    overrides = ["data=synthetic", "trainer.max_steps=6", "data.batch_size=8", "save_model=false", *SMALL]
    first = train(tmp_path / "a", overrides)
    again = train(tmp_path / "b", overrides)
    train(tmp_path / "c", [*overrides, "seed=7"])
    keys = ("precision", "recall", "f1", "tp", "fp", "fn", "seqeval_f1")
    assert {k: first["dev"][k] for k in keys} == {k: again["dev"][k] for k in keys}
    weights = [
        torch.load(p / "checkpoints" / "last.ckpt", weights_only=True)["state_dict"]
        for p in (tmp_path / "a", tmp_path / "b", tmp_path / "c")
    ]
    assert all(torch.equal(weights[0][k], weights[1][k]) for k in weights[0])
    assert not all(torch.equal(weights[0][k], weights[2][k]) for k in weights[0])


@pytest.mark.slow
def test_main_returns_dev_f1_to_hydra(tmp_path, cache):
    from clinical_ner.train import main

    learns = ["data=synthetic", "trainer.max_epochs=8", "data.batch_size=8", "optim.lr=3e-3", *SMALL]
    cfg = compose_train([*QUIET, f"output_dir={tmp_path}", *learns])  # dev F1 0.75, test 0.70
    returned = main.__wrapped__(cfg)
    results = json.loads((tmp_path / "results.json").read_text())
    assert returned == results["dev"]["f1"] != results["test"]["f1"]

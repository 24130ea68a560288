"""Reports over hand-made sweep folders: table numbers, bootstrap intervals, failed and corrupt runs, CSV and PNG
outputs, determinism."""

from __future__ import annotations

import csv
import json
import logging
import statistics
from pathlib import Path

import numpy as np
import pytest

from clinical_ner.reports.bootstrap import (
    bootstrap_prf,
    count_matrix,
    doc_ids,
    micro_prf,
    paired_difference,
    resampled_scores,
)
from clinical_ner.reports.tables import main

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
TYPES = ("NORMALIZABLES", "PROTEINAS")


def prf(tp: int, fp: int, fn: int) -> tuple[float, float, float]:
    """Micro P/R/F1 by hand (the official scorer's formula)."""
    p = tp / (tp + fp) if tp + fp else 0.0
    r = tp / (tp + fn) if tp + fn else 0.0
    return p, r, (2 * p * r / (p + r) if p + r else 0.0)


def per_document(n_docs: int, seed: int) -> dict[str, list[int]]:
    """Deterministic per-document [tp, fp, fn] counts."""
    rng = np.random.default_rng(seed)
    return {f"doc{i:03d}": [int(v) for v in rng.integers(0, 6, size=3)] for i in range(n_docs)}


def scores(counts: dict[str, list[int]], **extra: float) -> dict:
    """A `test` section whose totals, P/R/F1 and per-type split agree with `counts`."""
    tp, fp, fn = (sum(c[i] for c in counts.values()) for i in range(3))
    p, r, f = prf(tp, fp, fn)
    # first type takes the first half of each count (rounded down), the second the rest
    halves = [(tp // 2, fp // 2, fn // 2), (tp - tp // 2, fp - fp // 2, fn - fn // 2)]
    per_type = {}
    for name, (t, x, n) in zip(TYPES, halves, strict=True):
        pt, rt, ft = prf(t, x, n)
        per_type[name] = {
            "precision": pt,
            "recall": rt,
            "f1": ft,
            "tp": t,
            "fp": x,
            "fn": n,
            "support": t + n,
        }
    section = {"precision": p, "recall": r, "f1": f, "tp": tp, "fp": fp, "fn": fn, "documents": len(counts)}
    return {**section, "per_type": per_type, "per_document": counts, **extra}


def config(approach: str) -> dict:
    epochs = 15 if approach == "tokencls" else 3
    return {
        "trainer": {"max_epochs": epochs, "max_steps": -1},
        "data": {"name": "pharmaconer", "train_limit": None},
        "pretrain": {"trainer": {"max_epochs": 2}, "use_epoch": 2, "max_tokens": None},
    }


def result(approach: str, model: str, corpus: str, seed: int, counts: dict, **test_extra: float) -> dict:
    """A complete results.json record."""
    return {
        "schema_version": 1,
        "status": "complete",
        "approach": approach,
        "model": model,
        "corpus": corpus,
        "scale": "tiny",
        "seed": seed,
        "config": config(approach),
        "dev": scores(counts),
        "test": scores(counts, **test_extra),
        "train": {"seconds": 100.0 + seed, "peak_memory_mb": 500.0 + 10 * seed, "parameters": 1000},
        "inference": {"documents": len(counts), "documents_per_s": 50.0 + seed},
        "pretrain": None if corpus == "none" else {"use_epoch": 2, "seconds": 3.0, "fit_seconds": 40.0},
        "timings": {"load_model": 2.0, "fit": 100.0 + seed, "predict_test": 4.0 + seed, "save": 1.0},
    }


def generative(seed: int) -> dict[str, float]:
    """Seq2seq test metrics that differ per seed."""
    return {
        "json_parse_rate": 0.8 + 0.05 * seed,
        "hallucination_rate": 0.1,
        "boundary_accuracy": 0.5,
        "boundary_accuracy_matched": 0.7,
        "format_compliance": 0.9,
        "format_compliance_corrected": 0.95,
        "documents_per_s": 5.0,
    }


def write(folder: Path, record: dict | str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "results.json"
    path.write_text(record if isinstance(record, str) else json.dumps(record), encoding="utf-8")
    return path


@pytest.fixture()
def sweep(tmp_path: Path) -> dict:
    """Two sweep folders: tokencls and seq2seq for llama2 (two seeds each), a continued tokencls cell, a
    failed seq2seq cell, a corrupt file and a partial one."""
    root = tmp_path / "multirun"
    runs = {}
    for seed in (1, 2):
        counts = per_document(30, seed)
        runs[("tokencls", seed)] = result("tokencls", "llama2", "none", seed, counts)
        write(root / "tok" / f"seed={seed}", runs[("tokencls", seed)])
        s2s_counts = per_document(30, 10 + seed)
        runs[("seq2seq", seed)] = result("seq2seq", "llama2", "none", seed, s2s_counts, **generative(seed))
        write(root / "s2s" / f"seed={seed}", runs[("seq2seq", seed)])
    write(root / "tok" / "bilingual", result("tokencls", "llama2", "bilingual", 1, per_document(30, 5)))
    failed = {
        "status": "failed",
        "error": "RuntimeError: CUDA out of memory\ntraceback line",
        "approach": "seq2seq",
        "model": "llama3_1",
        "corpus": "none",
        "scale": "tiny",
        "seed": 1,
        "config": config("seq2seq"),
    }
    write(root / "s2s" / "llama3_1", failed)
    corrupt = write(root / "s2s" / "corrupt", '{"status": "complete", "test": {')
    partial = write(root / "s2s" / "partial", json.dumps({"status": "complete", "approach": "seq2seq"}))
    return {"root": root, "runs": runs, "corrupt": corrupt, "partial": partial}


def run_tables(sweep: dict, out: Path, *args: str) -> Path:
    assert main([str(sweep["root"]), "--out", str(out), "--bootstrap", "200", *args]) == 0
    return out


def read_csv(path: Path) -> list[dict[str, str]]:
    with path.open(newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def md_rows(path: Path) -> list[list[str]]:
    """The cells of every row of the first Markdown table in a file."""
    lines = [line for line in path.read_text("utf-8").splitlines() if line.startswith("| ")]
    return [
        [cell.strip() for cell in line.strip("|").split(" | ")] for line in lines[1:] if "---" not in line
    ]


def test_means_and_std_equal_hand_computed_values(sweep, tmp_path):
    out = run_tables(sweep, tmp_path / "tables")
    f1s = [sweep["runs"][("tokencls", seed)]["test"]["f1"] for seed in (1, 2)]
    precisions = [sweep["runs"][("tokencls", seed)]["test"]["precision"] for seed in (1, 2)]
    row = next(r for r in read_csv(out / "tokencls.csv") if r["corpus"] == "none")
    assert float(row["f1_mean"]) == pytest.approx(100 * statistics.fmean(f1s), abs=1e-4)
    assert float(row["f1_std"]) == pytest.approx(100 * statistics.stdev(f1s), abs=1e-4)
    assert float(row["precision_mean"]) == pytest.approx(100 * statistics.fmean(precisions), abs=1e-4)
    assert (row["n_seeds"], row["seeds"], row["status"]) == ("2", "1;2", "complete")
    markdown = (out / "tokencls.md").read_text("utf-8")
    assert f"{100 * statistics.fmean(f1s):.2f} ± {100 * statistics.stdev(f1s):.2f} [" in markdown
    # one seed: no std, no ±
    bilingual = next(r for r in md_rows(out / "tokencls.md") if r[0] == "Spanish + English")
    assert bilingual[1] == "2" and "±" not in bilingual[6]


def test_tables_show_paper_numbers_caption_and_languages(sweep, tmp_path):
    out = run_tables(sweep, tmp_path / "tables")
    rows = md_rows(out / "tokencls.md")
    assert [r[0] for r in rows[:2]] == ["Not continued", "Spanish + English"]
    assert rows[0][2] == "Llama 2" and rows[0][-1] == "74.77" and rows[1][-1] == "75.44"
    markdown = (out / "tokencls.md").read_text("utf-8")
    assert "Scale: tiny." in markdown
    assert (
        "Fine-tuning budget per cell: max_epochs=15, max_steps=none, train_limit=all documents." in markdown
    )
    assert "Continued cells: pretraining 2 epochs of all tokens." in markdown
    assert "Seeds completed per cell: 1-2 (seeds 1, 2)." in markdown
    assert "not directly comparable" in markdown


def test_seq2seq_generative_columns_and_failed_cell(sweep, tmp_path):
    out = run_tables(sweep, tmp_path / "tables")
    row = next(r for r in read_csv(out / "seq2seq.csv") if r["model"] == "llama2")
    parse = [0.85, 0.9]
    assert float(row["json_parse_rate_mean"]) == pytest.approx(100 * statistics.fmean(parse), abs=1e-4)
    assert float(row["format_compliance_corrected_mean"]) == pytest.approx(95.0)
    assert float(row["boundary_accuracy_matched_mean"]) == pytest.approx(70.0)
    header = md_rows(out / "seq2seq.md")
    text = (out / "seq2seq.md").read_text("utf-8")
    assert "| Format Comp. | Format Comp. (corrected) |" in text
    failed_row = next(r for r in header if r[0] == "Llama 3.1")
    assert failed_row[1:3] == ["free", "0 (1 failed)"] and failed_row[3:6] == ["failed"] * 3
    failed = (out / "failed.md").read_text("utf-8")
    assert "RuntimeError: CUDA out of memory" in failed and "traceback line" not in failed
    assert read_csv(out / "failed.csv")[0]["model"] == "llama3_1"


def test_corrupt_and_partial_files_are_skipped_with_a_warning(sweep, tmp_path, caplog):
    with caplog.at_level(logging.WARNING):
        out = run_tables(sweep, tmp_path / "tables")
    warned = caplog.text
    assert str(sweep["corrupt"]) in warned and str(sweep["partial"]) in warned
    failed = (out / "failed.md").read_text("utf-8")
    assert str(sweep["corrupt"]) in failed and "unreadable" in failed
    assert "missing coordinates" in failed


def test_per_type_and_cost_tables(sweep, tmp_path):
    out = run_tables(sweep, tmp_path / "tables")
    per_type = read_csv(out / "per_type.csv")
    rows = [r for r in per_type if r["approach"] == "tokencls" and r["corpus"] == "none"]
    assert sorted(r["type"] for r in rows) == sorted(TYPES)
    expected = [sweep["runs"][("tokencls", s)]["test"]["per_type"]["PROTEINAS"]["f1"] for s in (1, 2)]
    proteinas = next(r for r in rows if r["type"] == "PROTEINAS")
    assert float(proteinas["f1_mean"]) == pytest.approx(100 * statistics.fmean(expected), abs=1e-4)
    cost = read_csv(out / "cost.csv")
    tok = next(r for r in cost if r["approach"] == "tokencls" and r["corpus"] == "none")
    assert float(tok["train_seconds_mean"]) == pytest.approx(101.5)
    assert float(tok["inference_documents_per_s_mean"]) == pytest.approx(51.5)
    assert float(tok["predict_test_seconds_mean"]) == pytest.approx(5.5)
    assert float(tok["run_seconds_mean"]) == pytest.approx(2.0 + 101.5 + 5.5 + 1.0)
    continued = next(r for r in cost if r["corpus"] == "bilingual")
    assert float(continued["total_seconds_mean"]) == pytest.approx(101.0 + 40.0)


def test_csv_parses_back_to_the_markdown_numbers(sweep, tmp_path):
    out = run_tables(sweep, tmp_path / "tables")
    for csv_row, md_row in zip(read_csv(out / "tokencls.csv"), md_rows(out / "tokencls.md"), strict=False):
        for name, cell in zip(("precision", "recall", "f1"), md_row[4:7], strict=True):
            mean = cell.split()[0]
            assert f"{float(csv_row[f'{name}_mean']):.2f}" == mean
            low, high = cell.split("[")[1].rstrip("]").split(", ")
            assert f"{float(csv_row[f'{name}_ci_low']):.2f}" == low
            assert f"{float(csv_row[f'{name}_ci_high']):.2f}" == high


def test_bootstrap_interval_contains_the_estimate_and_narrows_with_more_documents():
    small = per_document(40, 3)
    # the same documents ten times over (distinct ids): same point estimate, more documents
    large = {f"{doc}-{k}": counts for k in range(10) for doc, counts in small.items()}
    tp, fp, fn = (sum(c[i] for c in small.values()) for i in range(3))
    point = prf(tp, fp, fn)
    widths = []
    for counts in (small, large):
        intervals = bootstrap_prf([counts], 500, np.random.default_rng(0))
        assert intervals is not None
        for name, value in zip(("precision", "recall", "f1"), point, strict=True):
            assert intervals[name].low <= value <= intervals[name].high
        widths.append(intervals["f1"].high - intervals["f1"].low)
        assert intervals["f1"].documents == len(counts)
    assert widths[1] < widths[0] / 2


def test_unit_weights_reproduce_the_reported_seed_mean():
    runs = [per_document(25, 1), per_document(25, 2)]
    docs = doc_ids(runs)
    scores = resampled_scores(count_matrix(runs, docs), np.ones((1, len(docs)), dtype=np.int64))
    expected = statistics.fmean(prf(*(sum(c[i] for c in run.values()) for i in range(3)))[2] for run in runs)
    assert scores["f1"][0] == pytest.approx(expected, abs=1e-12)
    assert micro_prf(np.array([0, 0, 0]))["f1"] == 0.0


def test_paired_difference_of_identical_systems_is_exactly_zero(tmp_path):
    runs = [per_document(30, 1), per_document(30, 2)]
    interval = paired_difference(runs, runs, 300, np.random.default_rng(1))
    assert interval is not None and interval.low == 0.0 and interval.high == 0.0
    # the same through the table: seq2seq with the token classifier's exact counts
    for seed, counts in enumerate(runs):
        write(tmp_path / "runs" / f"tok{seed}", result("tokencls", "llama3", "none", seed, counts))
        write(
            tmp_path / "runs" / f"s2s{seed}",
            result("seq2seq", "llama3", "none", seed, counts, **generative(0)),
        )
    assert main([str(tmp_path / "runs"), "--out", str(tmp_path / "out"), "--no-plots"]) == 0
    (row,) = read_csv(tmp_path / "out" / "difference.csv")
    assert (row["f1_difference"], row["ci_low"], row["ci_high"]) == ("0.0000", "0.0000", "0.0000")
    assert not list((tmp_path / "out").glob("*.png"))


def test_paired_difference_is_positive_for_a_better_system():
    worse = {doc: [tp, fp + 2, fn + 2] for doc, (tp, fp, fn) in per_document(60, 4).items()}
    better = {doc: [tp + 2, fp, fn] for doc, (tp, fp, fn) in per_document(60, 4).items()}
    interval = paired_difference([better], [worse], 500, np.random.default_rng(2))
    assert interval is not None and 0 < interval.low < interval.high


def test_difference_table_pairs_the_two_approaches(sweep, tmp_path):
    out = run_tables(sweep, tmp_path / "tables")
    (row,) = read_csv(out / "difference.csv")
    tok = statistics.fmean(sweep["runs"][("tokencls", s)]["test"]["f1"] for s in (1, 2))
    s2s = statistics.fmean(sweep["runs"][("seq2seq", s)]["test"]["f1"] for s in (1, 2))
    assert (row["model"], row["corpus"]) == ("llama2", "none")
    assert float(row["f1_difference"]) == pytest.approx(100 * (tok - s2s), abs=1e-4)
    assert float(row["ci_low"]) <= float(row["f1_difference"]) <= float(row["ci_high"])
    assert row["documents"] == "30"


def test_each_seed_s_difference_is_shown_and_seeds_of_opposite_sign_are_flagged(sweep, tmp_path):
    out = run_tables(sweep, tmp_path / "tables", "--no-plots")
    (row,) = read_csv(out / "difference.csv")
    runs = sweep["runs"]
    deltas = {s: runs[("tokencls", s)]["test"]["f1"] - runs[("seq2seq", s)]["test"]["f1"] for s in (1, 2)}
    assert row["f1_difference_by_seed"] == ";".join(f"{s}:{100 * d:.4f}" for s, d in deltas.items())
    shown = md_rows(out / "difference.md")[0][-1]
    assert shown == ", ".join(f"{s}: {100 * d:.2f}" for s, d in deltas.items())
    assert "does not cover the choice of seeds" in (out / "difference.md").read_text("utf-8")
    # seed 1 favours token classification, seed 2 seq2seq, by the same documents' counts swapped
    better = {doc: [tp + 3, fp, fn] for doc, (tp, fp, fn) in per_document(40, 7).items()}
    worse = per_document(40, 7)
    for seed, (tok, s2s) in ((1, (better, worse)), (2, (worse, better))):
        write(tmp_path / "swap" / f"tok{seed}", result("tokencls", "llama2", "none", seed, tok))
        write(tmp_path / "swap" / f"s2s{seed}", result("seq2seq", "llama2", "none", seed, s2s))
    assert main([str(tmp_path / "swap"), "--out", str(tmp_path / "out"), "--no-plots"]) == 0
    (verdict,) = (row["verdict"] for row in read_csv(tmp_path / "out" / "summary.csv"))
    assert verdict.endswith(", seeds disagree")
    (by_seed,) = (row["f1_difference_by_seed"] for row in read_csv(tmp_path / "out" / "difference.csv"))
    first, second = (float(part.split(":")[1]) for part in by_seed.split(";"))
    assert first > 0 > second and first == pytest.approx(-second)


def test_a_comparison_of_different_seed_sets_is_flagged_unmatched(sweep, tmp_path):
    out = run_tables(sweep, tmp_path / "matched", "--no-plots")
    verdicts = {row["comparison"]: row["verdict"] for row in read_csv(out / "summary.csv")}
    assert "unmatched" not in verdicts["tokencls - seq2seq"]  # seeds 1, 2 on both sides
    assert verdicts["corpus X - none"].endswith(", seeds unmatched")  # the continued cell has seed 1 only
    counts = per_document(40, 7)
    for folder, approach, seed in (("tok1", "tokencls", 1), ("tok2", "tokencls", 2), ("s2s1", "seq2seq", 1)):
        write(tmp_path / "uneven" / folder, result(approach, "llama2", "none", seed, counts))
    assert main([str(tmp_path / "uneven"), "--out", str(tmp_path / "out"), "--no-plots"]) == 0
    (verdict,) = (row["verdict"] for row in read_csv(tmp_path / "out" / "summary.csv"))
    assert verdict.endswith(", seeds unmatched")
    assert "`seeds unmatched`: read `Δ per seed`" in (tmp_path / "out" / "summary.md").read_text("utf-8")


def _caption_line(path: Path, start: str) -> str | None:
    return next((line for line in path.read_text("utf-8").splitlines() if line.startswith(start)), None)


def test_captions_name_the_machines_and_warn_when_approaches_ran_on_different_cpus(sweep, tmp_path):
    out = run_tables(sweep, tmp_path / "unrecorded", "--no-plots")
    assert _caption_line(out / "difference.md", "Computed on") is None  # records from before `machine`
    xeon = {"cpu": "Intel Xeon", "cpu_capability": "AVX512", "cuda": None, "threads": 2}
    epyc = {"cpu": "AMD EPYC", "cpu_capability": "AVX2", "cuda": None, "threads": 2}
    for seed in (1, 2):
        for approach, folder, machine in (("tokencls", "tok", xeon), ("seq2seq", "s2s", epyc)):
            record = sweep["runs"][(approach, seed)]
            write(sweep["root"] / folder / f"seed={seed}", {**record, "machine": machine})
    out = run_tables(sweep, tmp_path / "tables", "--no-plots")
    line = _caption_line(out / "difference.md", "Computed on")
    assert line.startswith(
        "Computed on: Token classification: Intel Xeon AVX512, 2 threads; Seq2seq: AMD EPYC AVX2, 2 threads."
    )
    assert "other F1 on another CPU" in line  # the difference pairs cells of two machines
    tokencls = _caption_line(out / "tokencls.md", "Computed on")  # + the continued cell, written without one
    assert tokencls.startswith("Computed on: Intel Xeon AVX512, 2 threads (2 runs); not recorded (1 run).")
    for seed in (1, 2):  # one machine everywhere: named, no warning
        for approach, folder in (("tokencls", "tok"), ("seq2seq", "s2s")):
            record = sweep["runs"][(approach, seed)]
            write(sweep["root"] / folder / f"seed={seed}", {**record, "machine": xeon})
    out = run_tables(sweep, tmp_path / "same", "--no-plots")
    line = _caption_line(out / "difference.md", "Computed on")
    assert "Intel Xeon AVX512, 2 threads" in line and "another CPU" not in line


def test_figures_are_valid_pngs(sweep, tmp_path):
    import matplotlib.image as mpimg

    out = run_tables(sweep, tmp_path / "tables")
    for name in ("precision_recall.png", "f1_by_model_corpus.png", "cost_vs_f1.png"):
        path = out / name
        assert path.read_bytes()[:8] == PNG_MAGIC
        height, width, _ = mpimg.imread(path).shape
        assert height > 100 and width > 100


def test_same_seed_same_bytes_other_seed_other_intervals(sweep, tmp_path):
    first = run_tables(sweep, tmp_path / "a", "--seed", "3")
    second = run_tables(sweep, tmp_path / "b", "--seed", "3")
    names = sorted(p.name for p in first.iterdir())
    assert names == sorted(p.name for p in second.iterdir()) and len(names) == 20
    for name in names:
        assert (first / name).read_bytes() == (second / name).read_bytes(), name
    other = run_tables(sweep, tmp_path / "c", "--seed", "4")
    assert (other / "tokencls.csv").read_bytes() != (first / "tokencls.csv").read_bytes()


def test_a_rerun_seed_replaces_its_failed_attempt(tmp_path):
    counts = per_document(10, 1)
    failed = {**result("tokencls", "llama2", "none", 1, counts), "status": "failed", "error": "boom"}
    del failed["test"]
    write(tmp_path / "runs" / "2026-01-01" / "a", failed)
    write(tmp_path / "runs" / "2026-01-02" / "a", result("tokencls", "llama2", "none", 1, counts))
    assert (
        main([str(tmp_path / "runs"), "--out", str(tmp_path / "out"), "--no-plots", "--bootstrap", "0"]) == 0
    )
    (row,) = read_csv(tmp_path / "out" / "tokencls.csv")
    assert (row["status"], row["n_seeds"], row["f1_ci_low"]) == ("complete", "1", "")
    assert read_csv(tmp_path / "out" / "failed.csv") == []


def test_no_results_is_a_user_error(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main([str(tmp_path), "--out", str(tmp_path / "out")])
    assert exit_info.value.code == 2
    assert "no results.json" in capsys.readouterr().err


def test_summary_is_printed(sweep, tmp_path, capsys):
    run_tables(sweep, tmp_path / "tables", "--no-plots")
    printed = capsys.readouterr().out
    assert "5 complete runs, 1 failed, 2 files skipped" in printed
    assert "Llama 3.1" in printed and "failed" in printed


# --- cells keyed on the whole config: ablations stay apart, paired differences need the same documents --------


def ablation(seed: int, lr: float, **config_extra) -> dict:
    """A token-classification run of llama2 / none whose config sets `optim.lr` (and `config_extra`)."""
    record = result("tokencls", "llama2", "none", seed, per_document(20, seed))
    record["config"] = {**record["config"], "optim": {"lr": lr}, **config_extra}
    return record


def test_ablations_are_separate_cells_with_their_differing_keys_shown(tmp_path):
    for seed in (1, 2):
        for lr in (0.001, 0.002):
            write(tmp_path / "runs" / f"lr{lr}" / f"s{seed}", ablation(seed, lr))
    assert (
        main([str(tmp_path / "runs"), "--out", str(tmp_path / "out"), "--no-plots", "--bootstrap", "0"]) == 0
    )
    rows = read_csv(tmp_path / "out" / "tokencls.csv")
    assert sorted(r["setting"] for r in rows) == ["optim.lr=0.001", "optim.lr=0.002"]
    assert [r["n_seeds"] for r in rows] == ["2", "2"]  # seeds average within an ablation, never across
    markdown = (tmp_path / "out" / "tokencls.md").read_text("utf-8")
    assert "Config keys that differ between cells of the same model and corpus (Setting column): " in markdown
    assert "Token classification: optim.lr." in markdown
    assert [r[3] for r in md_rows(tmp_path / "out" / "tokencls.md")[:2]] == [
        "optim.lr=0.001",
        "optim.lr=0.002",
    ]


def test_an_ablation_with_the_same_seed_does_not_replace_the_other(tmp_path):
    write(tmp_path / "runs" / "a", ablation(1, 0.001))
    write(tmp_path / "runs" / "b", ablation(1, 0.001, approach={"decoding": "constrained"}))
    assert (
        main([str(tmp_path / "runs"), "--out", str(tmp_path / "out"), "--no-plots", "--bootstrap", "0"]) == 0
    )
    settings = sorted(r["setting"] for r in read_csv(tmp_path / "out" / "tokencls.csv"))
    assert settings == ["approach.decoding=constrained", "approach.decoding=unset"]


def test_runs_differing_only_in_how_they_were_watched_share_a_cell(tmp_path):
    watched = {"logger": {"name": "wandb"}, "trainer": {"max_epochs": 15, "max_steps": -1, "threads": 1}}
    write(tmp_path / "runs" / "a", ablation(1, 0.001, logger={"name": "csv"}))
    write(tmp_path / "runs" / "b", ablation(2, 0.001, output_dir="/elsewhere", **watched))
    assert (
        main([str(tmp_path / "runs"), "--out", str(tmp_path / "out"), "--no-plots", "--bootstrap", "0"]) == 0
    )
    (row,) = read_csv(tmp_path / "out" / "tokencls.csv")
    assert (row["n_seeds"], row["setting"]) == ("2", "")


def test_a_paired_difference_over_different_documents_is_refused(tmp_path, caplog):
    counts = per_document(30, 1)
    write(tmp_path / "runs" / "tok", result("tokencls", "llama3", "none", 1, counts))
    fewer = dict(list(counts.items())[:20])  # as with data.eval_limit=20 on one side
    write(tmp_path / "runs" / "s2s", result("seq2seq", "llama3", "none", 1, fewer, **generative(0)))
    with caplog.at_level(logging.WARNING):
        assert main([str(tmp_path / "runs"), "--out", str(tmp_path / "out"), "--no-plots"]) == 0
    (row,) = read_csv(tmp_path / "out" / "difference.csv")
    assert row["f1_difference"] == row["ci_low"] == ""
    assert row["refused"] == "different test documents (30 vs 20; 10 scored by only one side)"
    markdown = (tmp_path / "out" / "difference.md").read_text("utf-8")
    assert "refused: different test documents" in markdown
    assert "refused" in caplog.text
    assert (tmp_path / "out" / "tokencls.csv").is_file()  # the rest of the report is written


def test_stale_folders_of_an_earlier_config_are_not_reported(tmp_path):
    write(tmp_path / "runs" / "cell", ablation(1, 0.002))
    write(tmp_path / "runs" / "cell" / "stale-2026-01-01_00-00-00", ablation(1, 0.001))
    assert (
        main([str(tmp_path / "runs"), "--out", str(tmp_path / "out"), "--no-plots", "--bootstrap", "0"]) == 0
    )
    (row,) = read_csv(tmp_path / "out" / "tokencls.csv")
    assert row["n_seeds"] == "1" and row["setting"] == ""


def test_a_record_from_before_the_approach_schemas_shares_the_cell_of_a_new_one(tmp_path):
    # old records also held the other approach's (unused) settings; they are the same computation
    new = {"name": "tokencls", "label_position": "last"}
    write(tmp_path / "runs" / "new", ablation(1, 0.001, approach=new))
    write(tmp_path / "runs" / "old", ablation(2, 0.001, approach={**new, "unit": "sentence"}))
    assert (
        main([str(tmp_path / "runs"), "--out", str(tmp_path / "out"), "--no-plots", "--bootstrap", "0"]) == 0
    )
    (row,) = read_csv(tmp_path / "out" / "tokencls.csv")
    assert (row["n_seeds"], row["setting"]) == ("2", "")


def test_pretraining_budget_reads_runs_written_before_pretrain_trainer():
    from clinical_ner.reports.collect import Run

    def budget(pretrain: dict) -> str:
        return Run(Path("r.json"), {"corpus": "es", "config": {"pretrain": pretrain}}).pretrain_budget

    new = budget({"trainer": {"max_epochs": 2}, "max_tokens": 1024})
    assert new == budget({"epochs": 2, "max_tokens": 1024}) == "pretraining 2 epochs of 1024 tokens each"

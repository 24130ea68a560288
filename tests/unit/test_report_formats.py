"""The seq2seq formats table: one row per format cell, its F1 difference from the JSON cell paired over test
documents, and what each format cost at inference."""

from __future__ import annotations

from pathlib import Path

import pytest

from clinical_ner.reports.tables import main
from tests.unit.test_reports import md_rows, per_document, prf, read_csv, result, write


def seq2seq_run(seed: int, fmt: str, code: str, new_tokens: int, skipped: int = 0) -> dict:
    """A constrained seq2seq run of llama2 / none writing `fmt`, computed with code version `code`."""
    offset = 0 if fmt == "json" else 50  # the formats score different documents the same way
    record = result("seq2seq", "llama2", "none", seed, per_document(30, offset + seed))
    record["config"] = {**record["config"], "approach": {"format": fmt, "decoding": "constrained"}}
    record["code"] = {"hash": code}
    record["inference"] = {**record["inference"], "new_tokens": new_tokens}
    record["train"] = {
        **record.get("train", {}),
        "skipped_examples": skipped,
    }  # longer than approach.max_length
    record["machine"] = {"cpu": "Intel Xeon", "cpu_capability": "AVX512", "threads": 2}
    return record


def f1_of(counts: dict[str, list[int]]) -> float:
    return prf(*(sum(c[i] for c in counts.values()) for i in range(3)))[2]


@pytest.fixture()
def runs(tmp_path: Path) -> Path:
    root = tmp_path / "runs"
    for seed in (1, 2):
        write(root / "json" / f"s{seed}", seq2seq_run(seed, "json", "codeA", new_tokens=300))
        write(root / "inline" / f"s{seed}", seq2seq_run(seed, "inline", "codeB", 900, skipped=20 + seed))
    write(root / "tok", result("tokencls", "llama2", "none", 1, per_document(30, 1)))
    return root


def tables(root: Path, out: Path) -> Path:
    assert main([str(root), "--out", str(out), "--no-plots", "--bootstrap", "200"]) == 0
    return out


def test_each_format_is_a_row_with_its_difference_from_json(runs, tmp_path):
    out = tables(runs, tmp_path / "out")
    json_row, inline_row = read_csv(out / "formats.csv")
    assert (json_row["format"], inline_row["format"]) == ("json", "inline")
    f1 = {
        fmt: sum(f1_of(per_document(30, offset + s)) for s in (1, 2)) / 2
        for fmt, offset in (("json", 0), ("inline", 50))
    }
    assert float(inline_row["test_f1"]) == pytest.approx(100 * f1["inline"], abs=1e-4)
    assert float(inline_row["f1_difference_vs_json"]) == pytest.approx(
        100 * (f1["inline"] - f1["json"]), abs=2e-4
    )
    assert (
        float(inline_row["ci_low"])
        <= float(inline_row["f1_difference_vs_json"])
        <= float(inline_row["ci_high"])
    )
    assert json_row["f1_difference_vs_json"] == ""  # JSON is the baseline, not compared with itself
    assert inline_row["code_vs_json"] == "differs"  # compared, never pooled: they stay two cells
    assert float(inline_row["new_tokens_per_document"]) == pytest.approx(900 / 30)
    assert float(json_row["new_tokens_per_document"]) == pytest.approx(300 / 30)
    assert inline_row["generated_on"] == "Intel Xeon AVX512, 2 threads"
    md = md_rows(out / "formats.md")
    assert [row[4] for row in md] == ["json", "inline"] and md[1][11] == "differs"
    assert (md[0][6], md[1][6]) == (
        "0 ± 0",
        "22 ± 1",
    )  # training examples too long to keep, per seed: 21 and 22
    assert float(inline_row["skipped_train_examples"]) == pytest.approx(21.5)
    # the seq2seq table names each row's format once cells differ in it
    assert sorted(r["format"] for r in read_csv(out / "seq2seq.csv")) == ["inline", "json"]
    assert "| Decoding | Format | Seeds |" in (out / "seq2seq.md").read_text("utf-8")


def test_no_formats_table_when_every_cell_wrote_json(runs, tmp_path):
    for seed in (1, 2):
        write(runs / "inline" / f"s{seed}", seq2seq_run(seed, "json", "codeA", new_tokens=300))
    out = tables(runs, tmp_path / "out")
    assert not (out / "formats.md").exists()
    assert "| Format |" not in (out / "seq2seq.md").read_text("utf-8")


def test_plot_points_of_another_format_are_labelled_with_it(runs):
    from clinical_ner.reports.cells import group_cells
    from clinical_ner.reports.collect import collect
    from clinical_ner.reports.plots import _tag

    tags = sorted(_tag(cell) for cell in group_cells(collect([runs]).runs))
    assert tags == ["", "", "inline"]  # json and token classification need no label

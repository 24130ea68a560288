"""Seq2seq output formats side by side (issue: formats beyond JSON): per seq2seq cell its format, dev and test F1,
the test F1 difference from the JSON cell of the same model, corpus and decoding (paired bootstrap over test
documents), and what the format costs at inference (new tokens per test document, documents per second, on
which CPU). Written only when the seq2seq cells use more than one format."""

from __future__ import annotations

from collections.abc import Sequence

from clinical_ner.reports.captions import caption, score_format
from clinical_ner.reports.cells import Cell, metric
from clinical_ner.reports.columns import epoch_text, key_csv
from clinical_ner.reports.difference import Comparison, compare, delta_text, interval_text
from clinical_ner.reports.identity import machine_of
from clinical_ner.reports.labels import corpus_name, family_name
from clinical_ner.reports.main_tables import decoding, output_format
from clinical_ner.reports.render import (
    FAILED,
    MISSING,
    Table,
    csv_number,
    csv_percent,
    mean_std,
    with_interval,
)
from clinical_ner.reports.scores import CellScores, seeds_text

BASELINE = "json"
_GROUP_CSV = ("model", "corpus", "epoch", "scale", "data")


def _group(cell: Cell) -> tuple:
    """What a format's cell shares with the JSON cell it is compared to."""
    key = cell.key
    return (key.model, key.corpus, key.epoch, key.scale, key.data, decoding(key))


def baseline_of(cell: Cell, cells: Sequence[Cell]) -> Cell | None:
    """The completed JSON cell of the same group (the one of the same code version when there are several)."""
    if output_format(cell.key) == BASELINE:
        return None
    found = [c for c in cells if c.ok and _group(c) == _group(cell) and output_format(c.key) == BASELINE]
    same_code = [c for c in found if c.key.code == cell.key.code]
    return (same_code or found or [None])[0]


def new_tokens_per_document(run) -> float | None:
    """The test generation's new tokens per document (results.json `inference`)."""
    section = run.section("inference")
    tokens, documents = section.get("new_tokens"), section.get("documents")
    return (
        tokens / documents if isinstance(tokens, int) and isinstance(documents, int) and documents else None
    )


def machines(cell: Cell) -> str:
    """The CPUs (or GPUs) the cell's seeds generated on: docs/s compare only on the same machine."""
    return "; ".join(sorted({machine_of(run) or MISSING for run in cell.runs})) or MISSING


def _code_note(cell: Cell, base: Cell | None) -> str:
    if base is None:
        return ""
    return "same" if base.key.code == cell.key.code else "differs"


def formats_table(scores: Sequence[CellScores], n_resamples: int, seed: int) -> Table | None:
    """A row per seq2seq cell, JSON first in each group; None when every cell wrote the same format."""
    cells = [s.cell for s in scores]
    if len({output_format(c.key) for c in cells}) < 2:
        return None
    header = [
        "Base model",
        "Language",
        "Epoch",
        "Decoding",
        "Format",
        "Seeds",
        "Too long",
        "Dev F1",
        "Test F1",
        "Δ F1 vs JSON",
        "95% paired CI",
        "Code vs JSON",
        "New tokens / doc",
        "Docs/s",
        "Generated on",
    ]
    rows, csv_rows = [], []
    ordered = sorted(
        scores,
        key=lambda s: (s.cell.key.sort_key[:4], decoding(s.cell.key), output_format(s.cell.key) != BASELINE),
    )
    for score in ordered:
        cell, key = score.cell, score.cell.key
        base = baseline_of(cell, cells)
        comparison: Comparison | None = (
            compare(cell, base, n_resamples, seed) if base is not None and cell.ok else None
        )
        dev = cell.summary(metric("dev", "f1"))
        skipped = cell.summary(metric("train", "skipped_examples"))
        tokens = cell.summary(new_tokens_per_document)
        speed = cell.summary(metric("inference", "documents_per_s"))
        test = with_interval(score.summaries["f1"], score.interval("f1")) if cell.ok else FAILED
        rows.append(
            [
                family_name(key.model),
                corpus_name(key.corpus),
                epoch_text(key.epoch),
                decoding(key),
                output_format(key),
                seeds_text(cell),
                mean_std(skipped, scale=1.0, digits=0),
                mean_std(dev),
                test,
                MISSING if comparison is None else delta_text(comparison),
                MISSING if comparison is None else interval_text(comparison.interval),
                _code_note(cell, base) or MISSING,
                mean_std(tokens, scale=1.0, digits=1),
                mean_std(speed, scale=1.0, digits=3),
                machines(cell),
            ]
        )
        interval = comparison.interval if comparison else None
        csv_rows.append(
            [
                *key_csv(key, _GROUP_CSV),
                decoding(key),
                output_format(key),
                len(cell.runs),
                csv_number(skipped.mean),
                csv_percent(dev.mean),
                csv_percent(score.summaries["f1"].mean),
                csv_percent(comparison.delta if comparison else None),
                csv_percent(interval.low if interval else None),
                csv_percent(interval.high if interval else None),
                _code_note(cell, base),
                csv_number(tokens.mean),
                csv_number(speed.mean),
                machines(cell),
            ]
        )
    what = (
        "Seq2seq output formats on the same model, corpus and decoding: dev F1 (the selection split), test F1, "
        "and test F1 minus the JSON cell's (percentage points; paired 95% bootstrap over test documents, the "
        f"same resampled documents for both formats, {n_resamples} resamples, seed {seed}). Choose a format on "
        "dev F1 only. `Too long`: training examples left out for exceeding `approach.max_length` (mean over "
        "seeds; copy formats write longer answers, so their cells may raise it). `Code vs JSON`: whether both "
        "cells ran the same code version (a difference of code is "
        "not pooled, only compared). New tokens / doc and Docs/s: the test generation; Docs/s compare only "
        "between cells generated on the same machine (`Generated on`)."
    )
    return Table(
        title="Seq2seq output formats",
        caption=caption(what, cells, score_format(n_resamples, seed)),
        header=header,
        rows=rows,
        csv_header=[
            *_GROUP_CSV,
            "decoding",
            "format",
            "n_seeds",
            "skipped_train_examples",
            "dev_f1",
            "test_f1",
            "f1_difference_vs_json",
            "ci_low",
            "ci_high",
            "code_vs_json",
            "new_tokens_per_document",
            "documents_per_s",
            "generated_on",
        ],
        csv_rows=csv_rows,
    )

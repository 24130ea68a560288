"""The study's summary, to quote in the README: test F1 per approach x corpus (mean ± std over seeds, 95%
interval over documents), then every paired comparison (approach difference per corpus, corpus effect per
approach) with whether its interval resolves it (excludes 0)."""

from __future__ import annotations

from collections.abc import Sequence

from clinical_ner.reports.captions import caption, score_format
from clinical_ner.reports.cells import Cell, settings
from clinical_ner.reports.corpus_effect import corpus_comparisons
from clinical_ner.reports.difference import (
    Comparison,
    by_seed_text,
    compare,
    delta_text,
    f1_by_seed,
    interval_text,
    pairs,
)
from clinical_ner.reports.labels import approach_name, corpus_name, family_name
from clinical_ner.reports.render import FAILED, Table, markdown_table, with_interval
from clinical_ner.reports.scores import CellScores, seeds_text


def verdict(comparison: Comparison) -> str:
    """resolved (the interval excludes 0), not resolved, or why there is no interval."""
    if comparison.refused:
        return "refused"
    resolved = comparison.resolved
    if resolved is None:
        return "no interval"
    signs = {delta > 0 for _, delta in comparison.by_seed if delta != 0}
    disagree = ", seeds disagree" if len(signs) > 1 else ""
    # seed means over different seeds mix seed-to-seed spread into the difference: `Δ per seed` is then the one to read
    matched = f1_by_seed(comparison.first).keys() == f1_by_seed(comparison.second).keys()
    return ("resolved" if resolved else "not resolved") + disagree + ("" if matched else ", seeds unmatched")


def _where(cell: Cell, setting: dict) -> str:
    key = cell.key
    extra = f" {{{setting[key]}}}" if setting.get(key) else ""
    return f"{approach_name(key.approach)}, {family_name(key.model)}, {corpus_name(key.corpus)}{extra}"


def _headline(scores: Sequence[CellScores], setting: dict) -> str:
    rows = []
    for score in scores:
        cell = score.cell
        f1 = with_interval(score.summaries["f1"], score.interval("f1")) if cell.ok else FAILED
        rows.append([_where(cell, setting), seeds_text(cell), f1])
    return markdown_table(["Cell", "Seeds", "Test F1"], rows)


def summary_table(scores: Sequence[CellScores], n_resamples: int, seed: int) -> Table:
    """Rows: every paired comparison with its verdict; notes: the headline F1 of every cell."""
    cells = [score.cell for score in scores]
    setting = settings(cell.key for cell in cells)
    approach = [compare(a, b, n_resamples, seed, warn=False) for a, b in pairs(cells)]
    corpus = corpus_comparisons(cells, n_resamples, seed, warn=False)
    rows, csv_rows = [], []
    for kind, found in (("tokencls - seq2seq", approach), ("corpus X - none", corpus)):
        for c in found:
            what = f"{_where(c.first, setting)} vs {_where(c.second, setting)}"
            rows.append([kind, what, delta_text(c), interval_text(c.interval), by_seed_text(c), verdict(c)])
            csv_rows.append([kind, c.first.key.label, c.second.key.label, delta_text(c), verdict(c)])
    what = (
        "Summary: every paired comparison of test F1 (percentage points, first minus second, seed means; paired "
        "95% bootstrap over test documents, the same resample for every seed). `resolved`: the interval excludes "
        "0; `not resolved`: the test set cannot tell the two apart. The interval does not cover the choice of "
        "seeds: `Δ per seed` gives the difference for each seed both sides completed; where their signs differ, "
        "the verdict says `seeds disagree`, and where the two sides completed different seeds (their means then "
        "average different seeds), `seeds unmatched`: read `Δ per seed`."
    )
    return Table(
        title="Summary",
        caption=caption(what, cells, score_format(n_resamples, seed)),
        header=["Comparison", "Cells", "Δ F1", "95% paired CI", "Δ per seed", "Verdict"],
        rows=rows,
        csv_header=["comparison", "first", "second", "f1_difference", "verdict"],
        csv_rows=csv_rows,
        notes=["## Test F1 per cell", _headline(scores, setting)],
    )

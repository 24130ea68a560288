"""Per-cell numbers shared by the tables and plots: seed summaries of test metrics and bootstrap intervals."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from clinical_ner.reports.bootstrap import Interval, bootstrap_prf, cell_rng
from clinical_ner.reports.cells import Cell, Summary, metric

PRF = ("precision", "recall", "f1")


@dataclass
class CellScores:
    """A cell with its test P/R/F1 seed summaries and their bootstrap intervals (None: not computable)."""

    cell: Cell
    summaries: dict[str, Summary]
    intervals: dict[str, Interval] | None

    def interval(self, name: str) -> Interval | None:
        return None if self.intervals is None else self.intervals.get(name)


def score_cell(cell: Cell, n_resamples: int, seed: int) -> CellScores:
    """Seed summaries of test P/R/F1 and their intervals over test documents."""
    summaries = {name: cell.summary(metric("test", name)) for name in PRF}
    counts = cell.per_documents
    intervals = None
    if counts is not None and n_resamples > 0:
        intervals = bootstrap_prf(counts, n_resamples, cell_rng(seed, cell.key.label))
    return CellScores(cell, summaries, intervals)


def score_cells(cells: Sequence[Cell], n_resamples: int, seed: int) -> list[CellScores]:
    """`score_cell` for every cell, in order."""
    return [score_cell(cell, n_resamples, seed) for cell in cells]


def seeds_text(cell: Cell) -> str:
    """ "2", or "1 (1 failed)" when some attempts failed without a complete rerun."""
    text = str(len(cell.runs))
    return f"{text} ({len(cell.failed)} failed)" if cell.failed else text


def status(cell: Cell) -> str:
    """complete (every attempted seed completed), partial (some failed) or failed (none completed)."""
    if not cell.runs:
        return "failed"
    return "partial" if cell.failed else "complete"


def seed_list(cell: Cell) -> str:
    """Completed seeds as "42;43" (CSV)."""
    return ";".join(str(seed) for seed in cell.seeds)

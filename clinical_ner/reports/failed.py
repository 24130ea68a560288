"""The runs that did not complete (with their error line) and the results files that could not be read."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from clinical_ner.reports.cells import Cell
from clinical_ner.reports.labels import approach_name, corpus_name, family_name
from clinical_ner.reports.render import MISSING, Table, markdown_table


def failed_table(cells: Sequence[Cell], skipped: Sequence[tuple[Path, str]]) -> Table:
    """A row per failed attempt without a complete rerun of its seed; unreadable files listed below."""
    rows, csv_rows = [], []
    for cell in cells:
        for run in cell.failed:
            seed = MISSING if run.seed is None else str(run.seed)
            coordinates = [approach_name(run.approach), family_name(run.model), corpus_name(run.corpus)]
            rows.append([*coordinates, run.scale, seed, run.error, str(run.path)])
            csv_rows.append(
                [run.approach, run.model, run.corpus, run.scale, "" if run.seed is None else run.seed]
                + [run.error, str(run.path)]
            )
    notes = []
    if skipped:
        notes = [
            "## Skipped results files (unreadable or partial)",
            markdown_table(["Path", "Why"], [[str(path), reason] for path, reason in skipped]),
        ]
    what = (
        f"Failed runs without a complete rerun of their seed: {len(rows)}. Results files skipped: {len(skipped)}. "
        "A cell with no completed seed shows `failed` in the other tables."
    )
    return Table(
        title="Failed runs",
        caption=[what],
        header=["Approach", "Base model", "Language", "Scale", "Seed", "Error", "Path"],
        rows=rows,
        csv_header=["approach", "model", "corpus", "scale", "seed", "error", "path"],
        csv_rows=csv_rows,
        notes=notes,
    )

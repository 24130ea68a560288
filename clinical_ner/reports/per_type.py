"""Per-type test F1 of every cell (from `test.per_type`): one column per entity type."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from clinical_ner.reports.captions import caption
from clinical_ner.reports.cells import Cell, settings
from clinical_ner.reports.collect import Run
from clinical_ner.reports.columns import CELL_CSV_HEADER, cell_cells, cell_csv, cell_header
from clinical_ner.reports.render import FAILED, Table, csv_percent, mean_std


def _per_type(run: Run) -> Mapping[str, Any]:
    value = run.section("test").get("per_type")
    return value if isinstance(value, Mapping) else {}


def entity_types(cells: Sequence[Cell]) -> list[str]:
    """Every type scored in any complete run, sorted."""
    return sorted({str(t) for cell in cells for run in cell.runs for t in _per_type(run)})


def type_metric(entity_type: str, name: str) -> Callable[[Run], float | None]:
    """A getter for `test.per_type[type][name]` (None when the run did not score that type)."""

    def get(run: Run) -> float | None:
        scores = _per_type(run).get(entity_type)
        value = scores.get(name) if isinstance(scores, Mapping) else None
        return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None

    return get


def per_type_table(cells: Sequence[Cell]) -> Table:
    """Markdown: a row per cell, F1 per type; CSV: a row per (cell, type) with P, R, F1 and support."""
    types = entity_types(cells)
    setting = settings(cell.key for cell in cells)
    show = any(setting.values())
    rows, csv_rows = [], []
    for cell in cells:
        f1s = [mean_std(cell.summary(type_metric(t, "f1"))) if cell.ok else FAILED for t in types]
        rows.append([*cell_cells(cell, setting[cell.key], show), *f1s])
        for entity_type in types:
            summaries = [cell.summary(type_metric(entity_type, n)) for n in ("precision", "recall", "f1")]
            support = cell.summary(type_metric(entity_type, "support"))
            csv_rows.append(
                [
                    *cell_csv(cell, setting[cell.key]),
                    entity_type,
                    *(v for s in summaries for v in (csv_percent(s.mean), csv_percent(s.std))),
                    "" if support.mean is None else f"{support.mean:.1f}",
                ]
            )
    what = "Test F1 per entity type (official rule, codalab: UNCLEAR is not scored)."
    cells_format = (
        "Cells: percent, mean ± sample std over seeds; `-`: the type was never scored in that cell."
    )
    return Table(
        title="Per-type F1",
        caption=caption(what, cells, cells_format),
        header=[
            *cell_header(show),
            *types,
        ],
        rows=rows,
        csv_header=[
            *CELL_CSV_HEADER,
            "type",
            "precision_mean",
            "precision_std",
            "recall_mean",
            "recall_std",
            "f1_mean",
            "f1_std",
            "support",
        ],
        csv_rows=csv_rows,
    )

"""What continual pretraining does, per approach: test F1 of corpus X minus that of the same cell without
continual pretraining (`corpus=none`), with a paired bootstrap interval over test documents (the same
resampled documents for both sides, every seed of each side; see `bootstrap`).

A continued cell is paired with the uncontinued cell of the same approach, model, scale, NER data, budget,
code version, weights and config, the corpus and pretraining settings aside: one thing changes along the axis.
Pairs whose two sides scored different test documents are shown as `refused`."""

from __future__ import annotations

from collections.abc import Sequence

from clinical_ner.reports.captions import caption
from clinical_ner.reports.cells import Cell, CellKey, settings
from clinical_ner.reports.columns import KEY_HEADER, key_cells, key_csv
from clinical_ner.reports.difference import (
    Comparison,
    compare,
    comparison_cells,
    comparison_csv,
    comparison_csv_header,
    comparison_header,
    interval_note,
)
from clinical_ner.reports.render import Table

BASELINE = "none"
# config keys that belong to the corpus axis itself
_AXIS_PREFIXES = ("corpus.", "pretrain.")


def corpus_pairing(key: CellKey) -> tuple:
    """What a continued cell shares with its uncontinued baseline."""
    config = tuple(item for item in key.config if not item[0].startswith(_AXIS_PREFIXES))
    return (key.approach, key.model, key.scale, key.data, key.budget, key.code, key.weights, config)


def corpus_pairs(cells: Sequence[Cell]) -> list[tuple[Cell, Cell]]:
    """(continued cell, its `corpus=none` cell), both with a completed seed, in the cells' order."""
    baselines = {corpus_pairing(c.key): c for c in cells if c.key.corpus == BASELINE and c.ok}
    found = []
    for cell in cells:
        if cell.key.corpus != BASELINE and cell.ok and corpus_pairing(cell.key) in baselines:
            found.append((cell, baselines[corpus_pairing(cell.key)]))
    return found


def corpus_comparisons(
    cells: Sequence[Cell], n_resamples: int, seed: int, warn: bool = True
) -> list[Comparison]:
    """Every continued cell against its baseline (`difference.compare`)."""
    return [compare(cell, base, n_resamples, seed, warn) for cell, base in corpus_pairs(cells)]


# the CSV's cell columns: the key's coordinates, then (after the Setting) what it computed with
_KEY = ("approach", "model", "corpus", "epoch", "scale", "data", "budget")
_IDENTITY = ("code", "weights")


def corpus_effect_table(cells: Sequence[Cell], n_resamples: int, seed: int) -> Table:
    """A row per continued cell: its F1, the baseline's, the difference and its paired 95% interval."""
    comparisons = corpus_comparisons(cells, n_resamples, seed)
    shown = [cell for c in comparisons for cell in (c.first, c.second)]
    setting = settings(cell.key for cell in shown)
    show = any(setting.values())
    rows, csv_rows = [], []
    for c in comparisons:
        key = c.first.key
        rows.append([*key_cells(key), *([setting[key]] if show else []), *comparison_cells(c)])
        csv_rows.append([*key_csv(key, _KEY), setting[key], *key_csv(key, _IDENTITY), *comparison_csv(c)])
    what = (
        "Corpus effect: test F1 after continual pretraining on corpus X minus the same approach, model, recipe "
        "and weights without it (percentage points). "
        + interval_note("both sides and every seed of each", n_resamples, seed, "effect")
    )
    return Table(
        title="Corpus effect (continued minus not continued)",
        caption=caption(what, shown, "F1: percent, mean ± sample std over seeds."),
        header=[
            *KEY_HEADER,
            *(["Setting"] if show else []),
            *comparison_header("Seeds (X / none)", "F1 (X)", "F1 (none)"),
        ],
        rows=rows,
        csv_header=[*_KEY, "setting", *_IDENTITY, *comparison_csv_header("corpus", BASELINE)],
        csv_rows=csv_rows,
    )

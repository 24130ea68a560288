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
from clinical_ner.reports.difference import Comparison, compare, delta_text, interval_text
from clinical_ner.reports.labels import approach_name, corpus_name, family_name
from clinical_ner.reports.render import MISSING, Table, csv_percent, mean_std
from clinical_ner.reports.scores import seeds_text

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


def corpus_effect_table(cells: Sequence[Cell], n_resamples: int, seed: int) -> Table:
    """A row per continued cell: its F1, the baseline's, the difference and its paired 95% interval."""
    comparisons = corpus_comparisons(cells, n_resamples, seed)
    shown = [cell for c in comparisons for cell in (c.first, c.second)]
    setting = settings(cell.key for cell in shown)
    show = any(setting.values())
    rows, csv_rows = [], []
    for c in comparisons:
        key = c.first.key
        docs = MISSING if c.interval is None else str(c.interval.documents)
        rows.append(
            [
                approach_name(key.approach),
                family_name(key.model),
                corpus_name(key.corpus),
                MISSING if key.epoch is None else str(key.epoch),
                *([setting[key]] if show else []),
                f"{seeds_text(c.first)} / {seeds_text(c.second)}",
                mean_std(c.a),
                mean_std(c.b),
                delta_text(c),
                interval_text(c.interval),
                docs,
            ]
        )
        csv_rows.append(
            [
                key.approach,
                key.model,
                key.corpus,
                "" if key.epoch is None else key.epoch,
                key.scale,
                key.data,
                key.budget,
                setting[key],
                key.code,
                key.weights,
                len(c.first.runs),
                len(c.second.runs),
                csv_percent(c.a.mean),
                csv_percent(c.b.mean),
                csv_percent(c.delta),
                csv_percent(c.interval.low if c.interval else None),
                csv_percent(c.interval.high if c.interval else None),
                "" if c.interval is None else c.interval.documents,
                c.refused or "",
            ]
        )
    what = (
        "Corpus effect: test F1 after continual pretraining on corpus X minus the same approach, model, recipe "
        "and weights without it (percentage points). Interval: paired 95% bootstrap over test documents (the "
        f"same resampled documents for both sides and every seed of each, {n_resamples} resamples, seed {seed}); "
        "when it excludes 0, the effect is not an accident of which documents are in the test set."
    )
    return Table(
        title="Corpus effect (continued minus not continued)",
        caption=caption(what, shown, "F1: percent, mean ± sample std over seeds."),
        header=[
            "Approach",
            "Base model",
            "Language",
            "Epoch",
            *(["Setting"] if show else []),
            "Seeds (X / none)",
            "F1 (X)",
            "F1 (none)",
            "Δ F1",
            "95% paired CI",
            "Docs",
        ],
        rows=rows,
        csv_header=[
            "approach",
            "model",
            "corpus",
            "epoch",
            "scale",
            "data",
            "budget",
            "setting",
            "code",
            "weights",
            "n_seeds_corpus",
            "n_seeds_none",
            "f1_corpus",
            "f1_none",
            "f1_difference",
            "ci_low",
            "ci_high",
            "documents",
            "refused",
        ],
        csv_rows=csv_rows,
    )

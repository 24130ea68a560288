"""Token classification minus seq2seq test F1 for every model and corpus run with both approaches (same
pretraining epoch, scale and NER data), with a paired bootstrap interval over test documents (see `bootstrap`).

A difference is only computed when both sides scored the same test documents (e.g. not when one side ran with
`data.eval_limit`): otherwise the row says why it is refused, and the rest of the report goes on."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

from clinical_ner.reports.bootstrap import Interval, cell_rng, paired_difference
from clinical_ner.reports.captions import caption
from clinical_ner.reports.cells import Cell, Summary, metric, settings
from clinical_ner.reports.columns import epoch_text, key_csv
from clinical_ner.reports.labels import corpus_name, family_name
from clinical_ner.reports.render import MISSING, Table, csv_percent, mean_std
from clinical_ner.reports.scores import seeds_text

log = logging.getLogger(__name__)

FIRST, SECOND = "tokencls", "seq2seq"
REFUSED = "refused"


def pairs(cells: Sequence[Cell]) -> list[tuple[Cell, Cell]]:
    """(token classification, seq2seq) cells with the same model, corpus, epoch, scale and data, both with a
    completed seed (every combination when either side has several training budgets)."""
    firsts = [c for c in cells if c.key.approach == FIRST and c.ok]
    seconds = [c for c in cells if c.key.approach == SECOND and c.ok]
    return [(a, b) for a in firsts for b in seconds if a.key.pairing == b.key.pairing]


def scored_documents(cell: Cell) -> frozenset[str] | None:
    """The test documents the cell's seeds scored (None when a seed did not record per-document counts)."""
    counts = cell.per_documents
    return None if counts is None else frozenset(doc for run in counts for doc in run)


def _document_counts(cell: Cell) -> set[int]:
    return {int(n) for run in cell.runs if isinstance(n := run.section("test").get("documents"), int)}


def refusal(first: Cell, second: Cell) -> str | None:
    """Why the two cells cannot be compared document for document (None when they can): they scored
    different test documents (by id, else by count when ids were not recorded)."""
    a, b = scored_documents(first), scored_documents(second)
    if a is not None and b is not None:
        if a == b:
            return None
        return f"different test documents ({len(a)} vs {len(b)}; {len(a ^ b)} scored by only one side)"
    counts = _document_counts(first) | _document_counts(second)
    return (
        f"different test document counts ({', '.join(map(str, sorted(counts)))})" if len(counts) > 1 else None
    )


def pair_interval(first: Cell, second: Cell, n_resamples: int, seed: int) -> Interval | None:
    """The paired interval of first F1 - second F1, None without per-document counts on either side."""
    if first.per_documents is None or second.per_documents is None:
        return None
    rng = cell_rng(seed, f"difference|{first.key.label}|{second.key.label}")
    return paired_difference(first.per_documents, second.per_documents, n_resamples, rng)


@dataclass(frozen=True)
class Comparison:
    """first F1 - second F1 (seed means), its paired interval, or why the two cannot be compared; `by_seed`:
    the difference for each seed both sides completed (the seed-to-seed spread the interval does not cover)."""

    first: Cell
    second: Cell
    a: Summary
    b: Summary
    delta: float | None
    interval: Interval | None
    refused: str | None
    by_seed: tuple[tuple[int, float], ...] = ()

    @property
    def resolved(self) -> bool | None:
        """Whether the interval excludes 0 (None without an interval)."""
        if self.interval is None:
            return None
        return self.interval.low > 0 or self.interval.high < 0


def compare(first: Cell, second: Cell, n_resamples: int, seed: int, warn: bool = True) -> Comparison:
    """The paired comparison of two cells' test F1 (refused over different documents, with a warning unless
    `warn` is false: the summary repeats comparisons a table has already warned about)."""
    get_f1 = metric("test", "f1")
    a, b = first.summary(get_f1), second.summary(get_f1)
    refused = refusal(first, second)
    if refused is not None and warn:
        log.warning("difference %s vs %s refused: %s", first.key.label, second.key.label, refused)
    delta = None if a.mean is None or b.mean is None or refused else a.mean - b.mean
    interval = None if refused else pair_interval(first, second, n_resamples, seed)
    return Comparison(
        first, second, a, b, delta, interval, refused, () if refused else seed_deltas(first, second)
    )


def f1_by_seed(cell: Cell) -> dict[int | None, float]:
    """{seed: test F1} for every run of `cell` that has one."""
    get_f1 = metric("test", "f1")
    return {run.seed: value for run in cell.runs if (value := get_f1(run)) is not None}


def seed_deltas(first: Cell, second: Cell) -> tuple[tuple[int, float], ...]:
    """(seed, first F1 - second F1) for every seed both cells completed, by seed."""
    f1 = [f1_by_seed(first), f1_by_seed(second)]
    return tuple((seed, f1[0][seed] - f1[1][seed]) for seed in sorted(f1[0].keys() & f1[1].keys() - {None}))


def by_seed_text(comparison: Comparison) -> str:
    """ "42: 10.72, 43: 16.38" percentage points, `-` without a seed in common."""
    return ", ".join(f"{seed}: {100 * delta:.2f}" for seed, delta in comparison.by_seed) or MISSING


def delta_text(comparison: Comparison) -> str:
    """ "12.34" percentage points, or `refused: why`."""
    if comparison.refused:
        return f"{REFUSED}: {comparison.refused}"
    return MISSING if comparison.delta is None else f"{100 * comparison.delta:.2f}"


def interval_text(interval: Interval | None) -> str:
    """ "[1.20, 3.40]" percentage points."""
    return MISSING if interval is None else f"[{100 * interval.low:.2f}, {100 * interval.high:.2f}]"


def interval_note(sides: str, n_resamples: int, seed: int, effect: str) -> str:
    """The caption sentence on a comparison's interval, the same resampled documents for both `sides`."""
    return (
        "Interval: paired 95% bootstrap over test documents (the same resampled documents for "
        f"{sides}, {n_resamples} resamples, seed {seed}); when it excludes 0, the {effect} is not an accident "
        "of which documents are in the test set. It does not cover the choice of seeds: `Δ per seed` gives the "
        "difference for each seed both sides completed."
    )


def comparison_header(seeds: str, first_f1: str, second_f1: str) -> list[str]:
    """Markdown columns of `comparison_cells`, the seeds and F1 columns named by the table."""
    return [seeds, first_f1, second_f1, "Δ F1", "95% paired CI", "Docs", "Δ per seed"]


def comparison_cells(comparison: Comparison) -> list[str]:
    """A comparison's Markdown cells: both sides' seeds, both F1s, the difference, its interval, documents."""
    c = comparison
    documents = MISSING if c.interval is None else str(c.interval.documents)
    seeds = f"{seeds_text(c.first)} / {seeds_text(c.second)}"
    return [
        seeds,
        mean_std(c.a),
        mean_std(c.b),
        delta_text(c),
        interval_text(c.interval),
        documents,
        by_seed_text(c),
    ]


def comparison_csv_header(first: str, second: str) -> list[str]:
    """CSV columns of `comparison_csv`, the two sides named `first` and `second`."""
    sides = [f"{part}_{side}" for part in ("n_seeds", "f1") for side in (first, second)]
    return [*sides, "f1_difference", "ci_low", "ci_high", "documents", "refused", "f1_difference_by_seed"]


def comparison_csv(comparison: Comparison) -> list[object]:
    """A comparison's CSV values: seed counts, both F1s, the difference, its interval, documents, refusal."""
    c, interval = comparison, comparison.interval
    return [
        len(c.first.runs),
        len(c.second.runs),
        *(csv_percent(value) for value in (c.a.mean, c.b.mean, c.delta)),
        csv_percent(interval.low if interval else None),
        csv_percent(interval.high if interval else None),
        "" if interval is None else interval.documents,
        c.refused or "",
        ";".join(f"{seed}:{csv_percent(delta)}" for seed, delta in c.by_seed),
    ]


# the cell-key fields both sides of a pair share, in the CSV's column order
_PAIR_KEY = ("model", "corpus", "epoch", "scale", "data")


def difference_table(cells: Sequence[Cell], n_resamples: int, seed: int) -> Table:
    """A row per pair: both seed-mean F1s, their difference and its paired 95% interval."""
    found = pairs(cells)
    setting = settings(cell.key for pair in found for cell in pair)
    show = any(setting.values())
    rows, csv_rows = [], []
    refused_any = False
    for first, second in found:
        key = first.key
        comparison = compare(first, second, n_resamples, seed)
        refused_any = refused_any or comparison.refused is not None
        both = (
            f"{setting[first.key]} / {setting[second.key]}"
            if setting[first.key] != setting[second.key]
            else setting[key]
        )
        rows.append(
            [
                family_name(key.model),
                corpus_name(key.corpus),
                epoch_text(key.epoch),
                *([both] if show else []),
                *comparison_cells(comparison),
            ]
        )
        csv_rows.append(
            [
                *key_csv(key, _PAIR_KEY),
                first.key.budget,
                second.key.budget,
                setting[first.key],
                setting[second.key],
                *comparison_csv(comparison),
            ]
        )
    what = (
        "Token classification F1 minus seq2seq F1 (percentage points) on the test set, per model and corpus run "
        "with both approaches. " + interval_note("both approaches", n_resamples, seed, "gap")
    )
    if refused_any:
        what += " `refused`: the two sides scored different test documents, so their F1s are not comparable."
    return Table(
        title="Token classification vs seq2seq",
        caption=caption(
            what, [cell for pair in found for cell in pair], "F1: percent, mean ± sample std over seeds."
        ),
        header=[
            "Base model",
            "Language",
            "Epoch",
            *(["Setting"] if show else []),
            *comparison_header("Seeds (tokencls / seq2seq)", "Token cls F1", "Seq2seq F1"),
        ],
        rows=rows,
        csv_header=[
            *_PAIR_KEY,
            *(f"{part}_{side}" for part in ("budget", "setting") for side in (FIRST, SECOND)),
            *comparison_csv_header(FIRST, SECOND),
        ],
        csv_rows=csv_rows,
    )

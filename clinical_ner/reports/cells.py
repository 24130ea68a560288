"""Group runs into grid cells and summarise their seeds.

A cell is approach x model x corpus x pretraining epoch x scale x NER data x training budget: seeds are averaged
only when nothing but the seed differs in those, so a 5-step smoke run never pulls down a full run's mean.
"""

from __future__ import annotations

import logging
import statistics
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

from clinical_ner.reports.collect import Run
from clinical_ner.reports.labels import APPROACH_ORDER, CORPUS_ORDER, FAMILY_ORDER, rank

log = logging.getLogger(__name__)

SETTING_FIELDS = ("scale", "data", "budget", "pretrain_budget")


@dataclass(frozen=True)
class CellKey:
    """A cell of the grid; seeds of the same cell are repeats of one configuration."""

    approach: str
    model: str
    corpus: str
    epoch: int | None
    scale: str
    data: str = "pharmaconer"
    budget: str = ""
    pretrain_budget: str = ""

    @property
    def sort_key(self) -> tuple:
        return (
            rank(self.approach, APPROACH_ORDER),
            rank(self.model, FAMILY_ORDER),
            rank(self.corpus, CORPUS_ORDER),
            -1 if self.epoch is None else self.epoch,
            self.scale,
            self.data,
            self.budget,
            self.pretrain_budget,
        )

    @property
    def label(self) -> str:
        """Stable text form, used to seed the cell's bootstrap and in log lines."""
        epoch = "-" if self.epoch is None else str(self.epoch)
        fields = (self.approach, self.model, self.corpus, epoch, self.scale, self.data, self.budget)
        return "|".join((*fields, self.pretrain_budget))

    @property
    def pairing(self) -> tuple:
        """What two approaches' cells share to be compared (budgets differ between approaches by design)."""
        return (self.model, self.corpus, self.epoch, self.scale, self.data)


@dataclass
class Cell:
    """The complete runs of a cell (one per seed, by seed) and its failed attempts without a complete rerun."""

    key: CellKey
    runs: list[Run] = field(default_factory=list)
    failed: list[Run] = field(default_factory=list)

    @property
    def seeds(self) -> list[int]:
        return [run.seed for run in self.runs if run.seed is not None]

    @property
    def ok(self) -> bool:
        """At least one seed completed."""
        return bool(self.runs)

    @property
    def per_documents(self) -> list[dict[str, tuple[int, int, int]]] | None:
        """Every complete seed's per-document test counts; None when a seed did not record them (an interval
        over only some seeds would describe a different mean than the table shows)."""
        counts = [run.per_document for run in self.runs]
        if not counts or any(c is None for c in counts):
            return None
        return [c for c in counts if c is not None]

    def values(self, getter: Callable[[Run], float | None]) -> list[float]:
        """One value per complete seed (runs where `getter` finds nothing are left out)."""
        found = (getter(run) for run in self.runs)
        return [float(value) for value in found if value is not None]

    def summary(self, getter: Callable[[Run], float | None]) -> Summary:
        """Mean and sample standard deviation over seeds of `getter`."""
        return summarize(self.values(getter))


@dataclass(frozen=True)
class Summary:
    """Mean over seeds, sample standard deviation (None with fewer than two seeds) and the seed count."""

    mean: float | None
    std: float | None
    n: int


def summarize(values: Sequence[float]) -> Summary:
    """Mean and sample (n - 1) standard deviation: the spread one would expect from another seed."""
    if not values:
        return Summary(None, None, 0)
    std = statistics.stdev(values) if len(values) > 1 else None
    return Summary(statistics.fmean(values), std, len(values))


def metric(section: str, name: str) -> Callable[[Run], float | None]:
    """A getter for `run.data[section][name]` when it is a number."""

    def get(run: Run) -> float | None:
        value = run.section(section).get(name)
        return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None

    return get


def key_of(run: Run) -> CellKey:
    """The cell a run belongs to."""
    return CellKey(
        run.approach,
        run.model,
        run.corpus,
        run.epoch,
        run.scale,
        run.data_name,
        run.budget,
        run.pretrain_budget,
    )


def settings(keys: Iterable[CellKey]) -> dict[CellKey, str]:
    """Per cell, the scale / data / budget values that differ between cells of the same approach ("" when
    none does): the Setting column that keeps apart rows which would otherwise look the same. Approaches have
    different recipes by design, and cells without continual pretraining have no pretraining budget, so
    neither counts as a difference."""
    keys = list(keys)
    labels = {}
    for approach in {k.approach for k in keys}:
        mine = [k for k in keys if k.approach == approach]
        varying = [
            name
            for name in SETTING_FIELDS
            if len({getattr(k, name) for k in mine if name != "pretrain_budget" or k.pretrain_budget}) > 1
        ]
        for k in mine:
            labels[k] = ", ".join(str(getattr(k, name)) for name in varying if getattr(k, name))
    return labels


def group_cells(runs: Iterable[Run]) -> list[Cell]:
    """Cells in the paper's order. A seed run twice keeps its last complete run (by path: Hydra folders are
    timestamped); a failed attempt whose seed later completed is not counted against the cell."""
    cells: dict[CellKey, Cell] = {}
    by_seed: dict[tuple[CellKey, int | None], Run] = {}
    failures: dict[CellKey, list[Run]] = {}
    for run in sorted(runs, key=lambda r: str(r.path)):
        key = key_of(run)
        cells.setdefault(key, Cell(key))
        if run.status == "failed":
            failures.setdefault(key, []).append(run)
            continue
        previous = by_seed.get((key, run.seed))
        if previous is not None:
            log.warning(
                "%s: seed %s of %s is also in %s; keeping the latter",
                previous.path,
                run.seed,
                key.label,
                run.path,
            )
        by_seed[(key, run.seed)] = run
    for (key, _), run in by_seed.items():
        cells[key].runs.append(run)
    for key, cell in cells.items():
        cell.runs.sort(key=lambda r: (r.seed is None, r.seed or 0))
        done = set(cell.seeds)
        cell.failed = [run for run in failures.get(key, []) if run.seed not in done]
    return sorted(cells.values(), key=lambda cell: cell.key.sort_key)


# the columns that say which cell a row is, in the Markdown and CSV versions of the by-cell tables
CELL_CSV_HEADER = [
    "approach",
    "model",
    "corpus",
    "epoch",
    "scale",
    "data",
    "budget",
    "pretrain_budget",
    "n_seeds",
]


def cell_header(show_setting: bool) -> list[str]:
    """Markdown columns naming a cell: approach, model, language, epoch, (setting,) seeds."""
    return ["Approach", "Base model", "Language", "Epoch", *(["Setting"] if show_setting else []), "Seeds"]

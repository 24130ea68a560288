"""Group runs into grid cells and summarise their seeds.

A cell is approach x model x corpus x pretraining epoch x scale x NER data x training budget x the rest of the
resolved config: seeds are averaged only when nothing but the seed differs (keys that only change how a run is
watched, such as the logger or threads, do not count), so a 5-step smoke run never pulls down a full run's mean
and ablations (decoding, attention, lr, limits, ...) never pass for seeds of one another. Config keys that tell
apart cells of the same model and corpus are shown in the Setting column and the caption.
"""

from __future__ import annotations

import hashlib
import logging
import statistics
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, fields

from clinical_ner.config import APPROACH_SCHEMAS
from clinical_ner.config.compare import comparable, flatten, show_value
from clinical_ner.reports.collect import Run
from clinical_ner.reports.identity import (
    RANDOM_WEIGHTS,
    UNKNOWN_CODE,
    code_of,
    weights_of,
    weights_source,
)
from clinical_ner.reports.labels import APPROACH_ORDER, CORPUS_ORDER, FAMILY_ORDER, rank

log = logging.getLogger(__name__)

SETTING_FIELDS = ("scale", "data", "budget", "pretrain_budget", "code", "weights")
# config keys already shown through the budget fields
BUDGET_KEYS = (
    "trainer.max_epochs",
    "trainer.max_steps",
    "data.train_limit",
    "pretrain.trainer.max_epochs",
    "pretrain.epochs",  # runs written before the pretraining stage had its own `trainer`
    "pretrain.max_tokens",
)
# cells whose config differences are listed: the same coordinates, settings apart
_GROUP_FIELDS = ("approach", "model", "corpus", "epoch", "scale", "data", "code", "weights")


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
    # the rest of the resolved config, flat and sorted: ((dotted key, value as text), ...)
    config: tuple[tuple[str, str], ...] = ()
    # what the run computed with beyond its config: never pooled across (clinical_ner/reports/identity.py)
    code: str = UNKNOWN_CODE
    weights: str = RANDOM_WEIGHTS

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
            self.config,
            self.code,
            self.weights,
        )

    @property
    def label(self) -> str:
        """Stable text form, used to seed the cell's bootstrap and in log lines."""
        epoch = "-" if self.epoch is None else str(self.epoch)
        fields = (self.approach, self.model, self.corpus, epoch, self.scale, self.data, self.budget)
        config = hashlib.sha256(repr(self.config).encode("utf-8")).hexdigest()[:12] if self.config else ""
        # code and weights join the label only when known, so older reports keep their bootstrap seeds
        identity = [part for part in (self.code, self.weights) if part not in (UNKNOWN_CODE, RANDOM_WEIGHTS)]
        return "|".join((*fields, self.pretrain_budget, *([config] if config else []), *identity))

    @property
    def group(self) -> tuple:
        """The coordinates a row shows; cells of one group differ only in their settings."""
        return tuple(getattr(self, name) for name in _GROUP_FIELDS)

    @property
    def pairing(self) -> tuple:
        """What two approaches' cells share to be compared (budgets differ between approaches by design)."""
        return (
            self.model,
            self.corpus,
            self.epoch,
            self.scale,
            self.data,
            self.code,
            weights_source(self.weights),
        )


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


def _approach_keys(config: Mapping) -> set[str] | None:
    """The settings the run's approach has (records from before the per-approach schemas hold both's)."""
    approach = config.get("approach")
    schema = APPROACH_SCHEMAS.get(approach.get("name")) if isinstance(approach, Mapping) else None
    return None if schema is None else {f.name for f in fields(schema)}


def config_items(run: Run) -> tuple[tuple[str, str], ...]:
    """What a run computed with, beyond its seed: the resolved config without the seed and the keys that only
    change how it was watched (clinical_ner/config/compare.py), without `pretrain` when nothing was pretrained."""
    config = run.data.get("config")
    if not isinstance(config, Mapping):
        return ()
    kept = {k: v for k, v in comparable(config, _approach_keys(config)).items() if k != "seed"}
    if run.corpus == "none":
        kept.pop("pretrain", None)
    return tuple(sorted((key, show_value(value)) for key, value in flatten(kept).items()))


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
        config_items(run),
        code_of(run),
        weights_of(run),
    )


def config_differences(keys: Iterable[CellKey]) -> dict[str, list[str]]:
    """Per approach, the config keys whose values differ between cells of the same model, corpus, epoch, scale
    and data (budget keys aside: the budget fields show them); keys that differ only between models or corpora
    (hub ids, corpus paths) are coordinates, not differences."""
    groups: dict[tuple, list[dict[str, str]]] = {}
    for key in keys:
        groups.setdefault(key.group, []).append(dict(key.config))
    found: dict[str, set[str]] = {}
    for group, configs in groups.items():
        names = found.setdefault(group[0], set())
        for name in {n for config in configs for n in config}:
            if name not in BUDGET_KEYS and len({config.get(name) for config in configs}) > 1:
                names.add(name)
    return {approach: sorted(names) for approach, names in found.items()}


def _setting_text(name: str, value: object) -> str:
    """A Setting-column part: budgets as they are, code versions (their first 12 hex digits: the caption lists
    them whole) and weights named."""
    if name == "code":
        return f"code={str(value)[:12]}"
    return f"weights={value}" if name == "weights" else str(value)


def settings(keys: Iterable[CellKey]) -> dict[CellKey, str]:
    """Per cell, the scale / data / budget values and the config keys (`config_differences`) that differ between
    cells of the same approach ("" when none does): the Setting column that keeps apart rows which would
    otherwise look the same. Approaches have different recipes by design, and cells without continual
    pretraining have no pretraining budget, so neither counts as a difference."""
    keys = list(keys)
    differences = config_differences(keys)
    labels = {}
    for approach in {k.approach for k in keys}:
        mine = [k for k in keys if k.approach == approach]
        varying = [
            name
            for name in SETTING_FIELDS
            if len({getattr(k, name) for k in mine if name != "pretrain_budget" or k.pretrain_budget}) > 1
        ]
        for k in mine:
            config = dict(k.config)
            parts = [_setting_text(name, getattr(k, name)) for name in varying if getattr(k, name)]
            parts += [f"{name}={config.get(name, 'unset')}" for name in differences.get(approach, [])]
            labels[k] = ", ".join(parts)
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

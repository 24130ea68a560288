"""Table captions: the scale and NER data, the training budget each cell had (from the resolved config), the
machines that computed the runs, the config keys that tell cells of the same model and corpus apart, the seeds,
and how a cell reads."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

from clinical_ner.reports.cells import Cell, config_differences
from clinical_ner.reports.collect import Run
from clinical_ner.reports.identity import identity_line, machine_of
from clinical_ner.reports.labels import APPROACH_ORDER, approach_name, rank


def _runs(cells: Sequence[Cell]) -> list[Run]:
    return [run for cell in cells for run in (*cell.runs, *cell.failed)]


def scale_line(cells: Sequence[Cell]) -> str:
    """ "Scale: tiny. Data: pharmaconer." (every value present)."""
    scales = sorted({cell.key.scale for cell in cells})
    data = sorted({cell.key.data for cell in cells})
    return f"Scale: {', '.join(scales) or 'none'}. Data: {', '.join(data) or 'none'}."


def _plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


def _counted(values: list[str]) -> str:
    """The one value, or each distinct value with its number of runs."""
    counts = Counter(values)
    if len(counts) == 1:
        return next(iter(counts))
    return "; ".join(f"{text} ({_plural(n, 'run')})" for text, n in sorted(counts.items()))


def _distinct(values: list[str]) -> str:
    """The one value, or each distinct value with its number of runs (flagged: they differ)."""
    listed = _counted(values)
    return (
        listed if len(set(values)) == 1 else f"they differ, the Setting column tells the rows apart: {listed}"
    )


def _per_approach(runs: list[Run], value, distinct=_distinct) -> str:
    approaches = sorted({run.approach for run in runs}, key=lambda a: rank(a, APPROACH_ORDER))
    if len(approaches) == 1:
        return distinct([value(run) for run in runs])
    return "; ".join(
        f"{approach_name(a)}: {distinct([value(run) for run in runs if run.approach == a])}"
        for a in approaches
    )


def budget_line(cells: Sequence[Cell]) -> str:
    """The fine-tuning budget shared by every run of an approach (or each distinct one with its number of
    runs), then the continual-pretraining budget of the continued cells."""
    runs = _runs(cells)
    if not runs:
        return "Budget per cell: no runs."
    line = f"Fine-tuning budget per cell: {_per_approach(runs, lambda run: run.budget)}."
    continued = [run for run in runs if run.pretrain_budget]
    if continued:
        line += f" Continued cells: {_per_approach(continued, lambda run: run.pretrain_budget)}."
    return line


def machines_line(cells: Sequence[Cell]) -> str | None:
    """Which machines computed the runs, per approach (None when no run records one). Across CPUs the same seed
    gives other numbers and other timings, so a comparison across machines says so."""
    runs = _runs(cells)
    if not any(machine_of(run) for run in runs):
        return None
    line = f"Computed on: {_per_approach(runs, lambda run: machine_of(run) or 'not recorded', _counted)}."
    if len({machine_of(run) for run in runs}) > 1:
        line += (
            " The same seed gives other F1 on another CPU, about as far apart as two seeds (docs/real_weights.md,"
            " 'Same seed, different numbers'), and times compare only on one machine."
        )
    return line


def differences_line(cells: Sequence[Cell]) -> str | None:
    """Which config keys differ between cells of the same model, corpus, epoch, scale and data (the Setting
    column shows their values); None when no such cells differ."""
    found = {a: names for a, names in config_differences(cell.key for cell in cells).items() if names}
    if not found:
        return None
    approaches = sorted(found, key=lambda a: rank(a, APPROACH_ORDER))
    listed = "; ".join(f"{approach_name(a)}: {', '.join(found[a])}" for a in approaches)
    return f"Config keys that differ between cells of the same model and corpus (Setting column): {listed}."


def seeds_line(cells: Sequence[Cell]) -> str:
    """How many seeds each cell completed, and which."""
    counts = sorted({len(cell.runs) for cell in cells})
    if not counts:
        return "Seeds completed per cell: none."
    seeds = sorted({seed for cell in cells for seed in cell.seeds})
    span = str(counts[0]) if len(counts) == 1 else f"{counts[0]}-{counts[-1]}"
    return f"Seeds completed per cell: {span} (seeds {', '.join(map(str, seeds)) or 'none'})."


def caption(what: str, cells: Sequence[Cell], cells_format: str) -> list[str]:
    """Caption lines: what the table shows, scale and data, budget, machines, seeds, and how a cell reads."""
    optional = [line for line in (machines_line(cells), differences_line(cells)) if line]
    lines = [what, scale_line(cells), identity_line(*_identities(cells)), budget_line(cells)]
    return [*lines, *optional, seeds_line(cells), cells_format]


def _identities(cells: Sequence[Cell]) -> tuple[list[str], list[str]]:
    return [cell.key.code for cell in cells], [cell.key.weights for cell in cells]


def score_format(n_resamples: int, seed: int) -> str:
    """How a score cell reads."""
    interval = (
        f" [95% bootstrap interval over test documents, {n_resamples} resamples, seed {seed}; none where a run "
        "did not record per-document counts]"
        if n_resamples > 0
        else ""
    )
    return (
        "Cells: percent, mean ± sample std over seeds (std only with more than one seed)"
        f"{interval}; `failed`: no seed of the cell completed (see failed.md)."
    )

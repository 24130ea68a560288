"""Does a rerun reproduce its committed cell? `python -m clinical_ner.checks.recheck RUN [--committed DIR]`

    python -m clinical_ner.train -m experiment=study approach=tokencls corpus=none seed=42   # from a fresh clone
    python -m clinical_ner.checks.recheck multirun/study/tokencls/smollm2-none-small-s42

Finds the committed cell of the same config (`clinical_ner.config.compare.same_config`; the code version may differ:
that is what a rerun on newer code checks) under `--committed` (default results/real_weights), then compares
every number of what was scored and trained: dev and test scores with their per-document [tp, fp, fn] counts,
model selection, and the training's tokens, steps and epochs (wall-clock fields left out). Prints the F1 of each
side, the machine and code of each, and `reproduced` or the differing fields; exit 0 when identical, 1 when
not, 2 when no committed cell has the run's config (the nearest one's differing keys are named). Numbers are
expected to match only on the same CPU type (docs/real_weights.md, "Same seed, different numbers"): a rerun on
another machine is said so.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from clinical_ner.checks.compare_runs import numbers
from clinical_ner.config.compare import changed_keys, comparable, flatten, recorded_comparable, same_config
from clinical_ner.errors import UserError, cli, module_parser
from clinical_ner.reports.collect import Run, find_results, read_run
from clinical_ner.reports.identity import code_of, machine_of
from clinical_ner.run.record.folder import RESULTS_FILE

DEFAULT_COMMITTED = Path("results/real_weights")
# what a cell computed (wall-clock and machine fields are left out by `numbers`)
COMPARED = ("dev", "test", "selection", "train")
SHOWN = 8  # differing fields printed before "... and N more"


def load_run(path: Path) -> Run:
    """The complete run at `path` (a run folder or its results.json), or a UserError naming the file."""
    file = path / RESULTS_FILE if path.is_dir() else path
    if not file.is_file():
        raise UserError(f"{file}: no such file (a run folder or its {RESULTS_FILE})")
    run, why = read_run(file)
    if run is None:
        raise UserError(f"{file}: {why}")
    if run.status != "complete":
        raise UserError(f"{file}: the run is {run.status}, not complete: nothing to compare")
    return run


def matching_cell(run: Run, committed: Path) -> tuple[Run | None, Run | None]:
    """(the committed complete cell of `run`'s config, None) or (None, the nearest committed cell: same
    approach, corpus and seed, else None)."""
    config = dict(run.data.get("config", {}))
    nearest = None
    for path in find_results([committed]):
        cell, _ = read_run(path)
        if cell is None or cell.status != "complete" or path.resolve() == run.path.resolve():
            continue
        if same_config(dict(cell.data.get("config", {})), config):
            return cell, None
        if all(cell.data.get(key) == run.data.get(key) for key in ("approach", "corpus", "seed")):
            nearest = nearest or cell
    return None, nearest


def differences(rerun: Mapping[str, Any], cell: Mapping[str, Any]) -> tuple[int, list[str]]:
    """(how many numbers were compared, `section.key: rerun != committed` for each that differs)."""
    a = numbers({key: rerun.get(key) for key in COMPARED})
    b = numbers({key: cell.get(key) for key in COMPARED})
    keys = sorted(a.keys() | b.keys())
    return len(keys), [f"{key}: {a.get(key)} != {b.get(key)}" for key in keys if a.get(key) != b.get(key)]


def describe(label: str, run: Run) -> str:
    """One line: where the run lies, its test and dev F1, its code version and machine."""
    test, dev = run.section("test").get("f1"), run.section("dev").get("f1")
    f1 = f"test F1 {test:.4f}" if isinstance(test, float) else "test F1 -"
    f1 += f", dev F1 {dev:.4f}" if isinstance(dev, float) else ""
    return (
        f"{label}: {run.path.parent} ({f1}; code {code_of(run)[:12]}; {machine_of(run) or 'machine unknown'})"
    )


def recheck(run_path: Path, committed: Path) -> tuple[int, list[str]]:
    """(exit code, the lines to print) for the rerun at `run_path` against its cell under `committed`."""
    run = load_run(run_path)
    cell, nearest = matching_cell(run, committed)
    if cell is None:
        where = f"{run.path}: no complete committed cell under {committed} has this run's config"
        if nearest is None:
            raise UserError(f"{where} (none of the same approach, corpus and seed)")
        config = dict(run.data.get("config", {}))
        recorded = recorded_comparable(dict(nearest.data.get("config", {})), config)
        keys = changed_keys(flatten(recorded), flatten(comparable(config)))
        shown = ", ".join(keys[:SHOWN]) + (f" and {len(keys) - SHOWN} more" if len(keys) > SHOWN else "")
        raise UserError(f"{where}; {nearest.path} differs in {shown}")
    lines = [describe("rerun    ", run), describe("committed", cell)]
    compared, found = differences(run.data, cell.data)
    if machine_of(run) != machine_of(cell):
        lines.append("note: computed on another machine: the same seed gives other numbers on another CPU")
    if not found:
        lines.append(
            f"reproduced: all {compared} numbers identical (dev and test scores, per-document counts, selection, training)"
        )
        return 0, lines
    lines += [f"  {line}" for line in found[:SHOWN]]
    if len(found) > SHOWN:
        lines.append(f"  ... and {len(found) - SHOWN} more")
    lines.append(f"not reproduced: {len(found)} of {compared} numbers differ")
    return 1, lines


@cli
def main(argv: Sequence[str] | None = None) -> int:
    """Compare one rerun with its committed cell; exit 0 when identical."""
    parser = module_parser("clinical_ner.checks.recheck", __doc__.splitlines()[0])
    parser.add_argument("run", type=Path, help="the rerun's folder or its results.json")
    parser.add_argument(
        "--committed",
        type=Path,
        default=DEFAULT_COMMITTED,
        help=f"the committed results (default: {DEFAULT_COMMITTED})",
    )
    args = parser.parse_args(argv)
    if not args.committed.is_dir():
        raise UserError(f"{args.committed}: no such folder of committed results")
    code, lines = recheck(args.run, args.committed)
    print("\n".join(lines))
    return code


if __name__ == "__main__":
    sys.exit(main())

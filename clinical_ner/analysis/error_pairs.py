"""One error page per cell that several approaches completed (runs side by side).

Every cell of a sweep that more than one approach completed (same model, corpus, pretraining epoch, scale, seed
and NER corpus) gets a page with its runs side by side, token classification first.

python -m clinical_ner.analysis.error_pairs SWEEP_DIR [--out DIR] [--split test]

Pages go to `SWEEP_DIR/errors/` unless --out says otherwise: they hold clinical text, so they stay beside the runs.
"""

from __future__ import annotations

import argparse
import sys
from collections import defaultdict
from pathlib import Path

from clinical_ner.analysis.error_page import summary_line, write_page
from clinical_ner.errors import UserError, cli, module_parser, warnings_to_stderr
from clinical_ner.reports.collect import Run, collect

APPROACH_ORDER = ("tokencls", "seq2seq")  # the page's columns, left to right; other approaches after them


def _key(run: Run) -> tuple:
    return (run.model, run.corpus, run.epoch or 0, run.scale, run.seed, run.data_name)


def page_name(run: Run) -> str:
    """`errors-<model>-<corpus>[-e<epoch>]-<scale>-s<seed>[-<data>]` for the cell of `run`."""
    epoch = f"-e{run.epoch}" if run.epoch else ""
    data = "" if run.data_name == "pharmaconer" else f"-{run.data_name}"
    return f"errors-{run.model}-{run.corpus}{epoch}-{run.scale}-s{run.seed}{data}"


def approach_pairs(folders: list[Path]) -> dict[str, list[Path]]:
    """{page name: the run folders of one cell, token classification first} for every cell that at least two
    approaches completed."""
    cells: dict[tuple, list[Run]] = defaultdict(list)
    for run in collect(folders).complete:
        cells[_key(run)].append(run)
    pairs = {}
    for runs in cells.values():
        if len({run.approach for run in runs}) < 2:
            continue
        rank = {name: i for i, name in enumerate(APPROACH_ORDER)}
        runs = sorted(runs, key=lambda r: (rank.get(r.approach, len(rank)), r.approach, str(r.path)))
        pairs[page_name(runs[0])] = [run.path.parent for run in runs]
    return dict(sorted(pairs.items()))


def _parser() -> argparse.ArgumentParser:
    parser = module_parser("clinical_ner.analysis.error_pairs", __doc__.splitlines()[0])
    parser.add_argument("sweep", type=Path, help="a sweep folder (e.g. multirun/paper_grid)")
    parser.add_argument("--out", type=Path, help="folder for the pages (default: SWEEP/errors)")
    parser.add_argument("--split", default="test", help="the split shown (default: test)")
    return parser


@cli
def main(argv: list[str] | None = None) -> int:
    """Entry point; returns 0 (also when the sweep holds no pair yet: it says so)."""
    args = _parser().parse_args(argv)
    warnings_to_stderr()
    if not args.sweep.is_dir():
        raise UserError(f"{args.sweep}: sweep folder not found")
    pairs = approach_pairs([args.sweep])
    if not pairs:
        print(f"no cell of {args.sweep} was completed by two approaches: no error page written")
        return 0
    out = args.out if args.out is not None else args.sweep / "errors"
    out.mkdir(parents=True, exist_ok=True)
    for name, folders in pairs.items():
        path, runs = write_page(folders, args.split, out / f"{name}.html")
        lines = "; ".join(summary_line(i, run) for i, run in enumerate(runs, start=1))
        print(f"wrote {path}: {lines}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

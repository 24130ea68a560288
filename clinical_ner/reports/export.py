"""`python -m clinical_ner.reports.export SWEEP_DIR [--to results/real_weights]`

Copies every complete cell's results.json from a sweep folder into the repository's results folder, at the same
path below it (`<approach>/<cell>/results.json`), in one canonical form (sorted keys, 1-space indent, a final
newline), so the committed files, and the tables built from them, change only when a result does. A results.json
holds scores, per-document [tp, fp, fn] counts by document id, costs and the resolved config: no clinical text
and no predictions. Failed, partial and `stale-*` cells are left out (a later sweep redoes them).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from clinical_ner.errors import UserError, cli, module_parser
from clinical_ner.files.atomic import atomic_write_text
from clinical_ner.reports.collect import find_results, read_run

DEFAULT_TO = Path("results/real_weights")


def canonical_json(data: Any) -> str:
    """The committed form of a results.json: sorted keys, fixed indent, final newline."""
    return json.dumps(data, sort_keys=True, indent=1, ensure_ascii=False, allow_nan=False) + "\n"


def export(sweep_dir: Path, to: Path) -> dict[str, list[Path]]:
    """Copy the complete cells of `sweep_dir` into `to`; returns the written, unchanged and left-out files."""
    report: dict[str, list[Path]] = {"written": [], "unchanged": [], "left out": []}
    for path in find_results([sweep_dir]):
        run, _ = read_run(path)
        if run is None or run.status != "complete":
            report["left out"].append(path)
            continue
        target = to / path.relative_to(sweep_dir)
        text = canonical_json(run.data)
        if target.is_file() and target.read_text(encoding="utf-8") == text:
            report["unchanged"].append(target)
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(target, text)
        report["written"].append(target)
    return report


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = module_parser("clinical_ner.reports.export", __doc__.split("\n\n")[1])
    parser.add_argument("sweep_dir", type=Path, help="a sweep folder, e.g. multirun/study")
    parser.add_argument("--to", type=Path, default=DEFAULT_TO, help=f"results folder (default: {DEFAULT_TO})")
    return parser.parse_args(argv)


@cli
def main(argv: Sequence[str] | None = None) -> int:
    """Export, then one line per kind of file."""
    args = parse_args(argv)
    if not args.sweep_dir.is_dir():
        raise UserError(f"{args.sweep_dir}: no such sweep folder")
    report = export(args.sweep_dir, args.to)
    counts = ", ".join(f"{len(paths)} {kind}" for kind, paths in report.items())
    print(f"export {args.sweep_dir} -> {args.to}: {counts}")
    for path in report["left out"]:
        print(f"  left out (not complete): {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

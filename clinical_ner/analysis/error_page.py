"""CLI: an error-analysis page for one run, or several runs side by side, as one static HTML file.

python -m clinical_ner.analysis.error_page RUN [RUN_B ...] [--split test] [--out report.html] [--gold DIR]
    [--rule codalab|standalone]

The page holds clinical text, so it is written beside the first run (or to --out), readable by its owner only,
and never sent anywhere; the categories are defined in clinical_ner/metrics/error_categories.py.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from clinical_ner.analysis.error_html import render_page
from clinical_ner.analysis.error_runs import RunErrors, load_runs
from clinical_ner.errors import UserError, cli, module_parser
from clinical_ner.files.atomic import atomic_write_text
from clinical_ner.metrics.error_categories import totals
from clinical_ner.metrics.span_scorer import RULES
from clinical_ner.run.record.folder import RunFolder

PAGE_MODE = 0o600  # clinical text: the owner's eyes only


def default_out(first_run: Path, split: str, runs: int) -> Path:
    """`<first run>/errors-<split>.html`, or `errors-<split>-compare.html` for several runs."""
    return RunFolder(first_run).error_page(split, compare=runs > 1)


def _parser() -> argparse.ArgumentParser:
    parser = module_parser(
        "clinical_ner.analysis.error_page",
        "One static HTML page of a run's errors (several runs: side by side); opens from disk.",
    )
    parser.add_argument(
        "runs", type=Path, nargs="+", metavar="RUN", help="run folders (results.json + predictions/)"
    )
    parser.add_argument(
        "--split", default="test", help="the split whose predictions are shown (default: test)"
    )
    parser.add_argument("--out", type=Path, help="the HTML file (default: beside the first run)")
    parser.add_argument(
        "--gold", type=Path, metavar="DIR", help="gold .txt/.ann of the split (default: the run's corpus)"
    )
    parser.add_argument(
        "--rule", choices=RULES, help="scoring rule (default: the one the first run recorded)"
    )
    return parser


def write_page(
    runs: list[Path],
    split: str = "test",
    out: Path | None = None,
    gold: Path | None = None,
    rule: str | None = None,
) -> tuple[Path, list[RunErrors]]:
    """Build and write the page; returns (its path, the runs' RunErrors)."""
    docs, loaded, rule = load_runs(runs, split, gold, rule)
    path = Path(out) if out is not None else default_out(runs[0], split, len(runs))
    if not path.parent.is_dir():
        raise UserError(f"{path.parent}: folder not found for --out")
    try:
        atomic_write_text(path, render_page(docs, loaded, split, rule))
        os.chmod(path, PAGE_MODE)
    except OSError as err:
        if err.filename is None:
            err.filename = str(path)
        raise
    return path, loaded


def summary_line(index: int, run: RunErrors) -> str:
    """`run 1 <label>: F1 0.7000, TP .. FP .. FN .. on N documents` (the category sums)."""
    sums = totals(run.counts)
    return (
        f"run {index} {run.label}: F1 {run.scores.f1:.4f}, TP {sums['tp']} FP {sums['fp']} FN {sums['fn']} "
        f"on {run.scores.documents} documents"
    )


@cli
def main(argv: list[str] | None = None) -> int:
    """Entry point (`clinical-ner errors`); returns 0, user mistakes exit 2 with one `error:` line."""
    args = _parser().parse_args(argv)
    path, runs = write_page(args.runs, args.split, args.out, args.gold, args.rule)
    print("\n".join(summary_line(index, run) for index, run in enumerate(runs, start=1)))
    print(f"wrote {path} ({path.stat().st_size / 2**20:.2f} MiB; clinical text: keep it on this machine)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

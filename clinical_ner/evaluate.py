"""Strict span P/R/F1 of predicted .ann files vs. gold (PharmaCoNER subtask 1 rules).

python -m clinical_ner.evaluate GOLD_DIR PRED_DIR [--rule codalab|standalone] [--json] [--errors FILE]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from rich.console import Console
from rich.table import Table

from clinical_ner.errors import UserError, cli, module_parser, warnings_to_stderr
from clinical_ner.files.atomic import atomic_write_json
from clinical_ner.metrics.span_scorer import RULES, Scores, error_report, read_ann_dir, score_dirs


def _parser() -> argparse.ArgumentParser:
    parser = module_parser("clinical_ner.evaluate", __doc__.splitlines()[0])
    parser.add_argument("gold_dir", type=Path, help="folder of gold <id>.ann files")
    parser.add_argument("pred_dir", type=Path, help="folder of predicted <id>.ann files")
    parser.add_argument(
        "--rule",
        choices=RULES,
        default="codalab",
        help="codalab: UNCLEAR ignored on both sides (leaderboard, default); standalone: all types scored",
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    parser.add_argument(
        "--errors", type=Path, metavar="FILE", help="write per-document FP/FN offsets as JSON"
    )
    return parser


def _print_table(scores: Scores) -> None:
    table = Table(title=f"PharmaCoNER strict span scores, rule {scores.rule}")
    for column in ("type", "P", "R", "F1", "TP", "FP", "FN"):
        table.add_column(column, justify="left" if column == "type" else "right")
    rows = [(label, counts) for label, counts in scores.per_type.items()]
    rows.append(("ALL (micro)", scores.to_dict()))
    for label, counts in rows:
        table.add_row(
            label,
            *(f"{counts[key]:.4f}" for key in ("precision", "recall", "f1")),
            *(str(counts[key]) for key in ("tp", "fp", "fn")),
        )
    console = Console()
    console.print(table)
    console.print(f"documents scored: {scores.documents}")


@cli
def main(argv: list[str] | None = None) -> int:
    """Entry point; returns 0 on success (user errors exit 2 through `cli`)."""
    args = _parser().parse_args(argv)
    # Warnings (e.g. gold docs without a prediction file) go to stderr, keeping stdout clean for --json.
    warnings_to_stderr()
    scores = score_dirs(args.gold_dir, args.pred_dir, args.rule)
    if args.errors is not None:
        report = error_report(
            read_ann_dir(args.gold_dir, "gold"), read_ann_dir(args.pred_dir, "prediction"), args.rule
        )
        try:
            atomic_write_json(args.errors, report)
        except OSError as err:
            raise UserError(f"{args.errors}: cannot write error report ({err.strerror})") from None
    if args.json:
        print(json.dumps(scores.to_dict(), indent=2))
    else:
        _print_table(scores)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""`python -m clinical_ner.reports.tables DIR... [--out tables] [--bootstrap 1000] [--seed 0] [--no-plots]`

Reads every results.json below the folders (a Hydra sweep folder holds one sub-folder per cell) and writes into
`--out`: tokencls.md/.csv and seq2seq.md/.csv (the paper's tables, its numbers beside), formats (seq2seq
output formats side by side, when cells used several), per_type, cost,
difference (token classification minus seq2seq F1, paired bootstrap), corpus_effect (corpus X minus none per
approach, paired bootstrap), summary (every comparison and whether its interval resolves it) and failed
(.md/.csv), plus the figures of `clinical_ner.reports.plots`. Runs of different code versions or weights are
never pooled (one warning line says so when both are present). Unreadable or partial results files are skipped with a warning naming them.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from clinical_ner.errors import UserError, cli, module_parser, warnings_to_stderr
from clinical_ner.reports.cells import Cell, group_cells, metric, settings
from clinical_ner.reports.collect import Collection, collect
from clinical_ner.reports.corpus_effect import corpus_effect_table
from clinical_ner.reports.cost import cost_table
from clinical_ner.reports.difference import difference_table
from clinical_ner.reports.failed import failed_table
from clinical_ner.reports.formats import formats_table
from clinical_ner.reports.identity import identity_line
from clinical_ner.reports.labels import corpus_name, family_name
from clinical_ner.reports.main_tables import seq2seq_table, tokencls_table
from clinical_ner.reports.per_type import per_type_table
from clinical_ner.reports.plots import write_plots
from clinical_ner.reports.render import mean_std, write_table
from clinical_ner.reports.scores import score_cells, seeds_text
from clinical_ner.reports.summary import summary_table

log = logging.getLogger(__name__)


def write_reports(
    collection: Collection, out: Path, n_resamples: int = 1000, seed: int = 0, plots: bool = True
) -> tuple[list[Cell], list[Path]]:
    """Every table (and figure) of the collected runs into `out`; returns the cells and the written paths."""
    out.mkdir(parents=True, exist_ok=True)
    cells = group_cells(collection.runs)
    codes, weights = {c.key.code for c in cells}, {c.key.weights for c in cells}
    if len(codes) > 1 or len(weights) > 1:
        log.warning("%s", identity_line(codes, weights))
    scores = score_cells(cells, n_resamples, seed)
    tokencls = [s for s in scores if s.cell.key.approach == "tokencls"]
    seq2seq = [s for s in scores if s.cell.key.approach == "seq2seq"]
    written = []
    written += write_table(out, "tokencls", tokencls_table(tokencls, n_resamples, seed))
    written += write_table(out, "seq2seq", seq2seq_table(seq2seq, n_resamples, seed))
    if (formats := formats_table(seq2seq, n_resamples, seed)) is not None:
        written += write_table(out, "formats", formats)
    written += write_table(out, "per_type", per_type_table(cells))
    written += write_table(out, "cost", cost_table(cells))
    written += write_table(out, "difference", difference_table(cells, n_resamples, seed))
    written += write_table(out, "corpus_effect", corpus_effect_table(cells, n_resamples, seed))
    written += write_table(out, "summary", summary_table(scores, n_resamples, seed))
    written += write_table(out, "failed", failed_table(cells, collection.skipped))
    if plots:
        written += write_plots(cells, out, scores)
    return cells, written


def summary_lines(collection: Collection, cells: Sequence[Cell]) -> list[str]:
    """A few lines for the terminal: counts, then the test F1 of every cell."""
    lines = [
        f"{len(collection.complete)} complete runs, {len(collection.failed)} failed, "
        f"{len(collection.skipped)} files skipped; {len(cells)} cells"
    ]
    setting = settings(cell.key for cell in cells)
    for cell in cells:
        key = cell.key
        epoch = "" if key.epoch is None else f" (epoch {key.epoch})"
        f1 = mean_std(cell.summary(metric("test", "f1"))) if cell.ok else "failed"
        where = f"{key.approach:8} {family_name(key.model):9} {corpus_name(key.corpus)}{epoch} [{key.scale}]"
        if setting[key]:
            where += f" {{{setting[key]}}}"
        lines.append(f"  {where}: test F1 {f1} (seeds {seeds_text(cell)})")
    return lines


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = module_parser("clinical_ner.reports.tables", __doc__.split("\n\n")[1])
    parser.add_argument("dirs", nargs="+", type=Path, help="run or sweep folders (searched recursively)")
    parser.add_argument("--out", type=Path, default=Path("tables"), help="output folder (default: tables)")
    parser.add_argument("--bootstrap", type=int, default=1000, help="bootstrap resamples (0: no intervals)")
    parser.add_argument("--seed", type=int, default=0, help="bootstrap seed")
    parser.add_argument("--no-plots", action="store_true", help="tables only")
    return parser.parse_args(argv)


@cli
def main(argv: Sequence[str] | None = None) -> int:
    """Collect results, write tables and figures, print a summary; exit 0 even with failed or skipped runs."""
    args = parse_args(argv)
    if args.bootstrap < 0:
        raise UserError(f"--bootstrap must be >= 0, got {args.bootstrap}")
    warnings_to_stderr()
    collection = collect(args.dirs)
    if not collection.runs and not collection.skipped:
        raise UserError(f"no results.json found under {', '.join(map(str, args.dirs))}")
    cells, written = write_reports(collection, args.out, args.bootstrap, args.seed, plots=not args.no_plots)
    for line in summary_lines(collection, cells):
        print(line)
    print(f"wrote {len(written)} files to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

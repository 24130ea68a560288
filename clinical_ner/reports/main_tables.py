"""The paper's two main tables: token classification (Language, Epoch, Base model, P, R, F1) and seq2seq (Base
model, P, R, F1 and the generative metrics, original definitions with the corrected variants beside)."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from clinical_ner.reports.bootstrap import Interval
from clinical_ner.reports.captions import caption, score_format
from clinical_ner.reports.cells import CellKey, metric, settings
from clinical_ner.reports.columns import epoch_text, key_csv
from clinical_ner.reports.labels import corpus_name, family_name
from clinical_ner.reports.paper_results import SCORING_NOTE, PaperRow, paper_row, paper_rows
from clinical_ner.reports.render import (
    FAILED,
    MISSING,
    Table,
    csv_number,
    csv_percent,
    markdown_table,
    mean_std,
    with_interval,
)
from clinical_ner.reports.scores import PRF, CellScores, seed_list, seeds_text, status

# (results key in `test`, Markdown header, the paper's field), original definitions first, corrected beside
GENERATIVE = (
    ("json_parse_rate", "JSON Parse", "json_parse_rate"),
    ("hallucination_rate", "Halluc. Rate", "hallucination_rate"),
    ("boundary_accuracy", "Boundary Acc.", "boundary_accuracy"),
    ("boundary_accuracy_matched", "Boundary Acc. (matched)", None),
    ("format_compliance", "Format Comp.", "format_compliance"),
    ("format_compliance_corrected", "Format Comp. (corrected)", None),
)
PRF_HEADERS = ("Precision", "Recall", "F1")
# true by construction under approach.decoding=constrained: the grammar only lets out a closed JSON array of
# known types whose texts are copied from the input, and the decoder itself places start/end; so these measure
# the decoder, not the model, and are shown as such (measured values only for free decoding)
GUARANTEED = frozenset(
    {
        "json_parse_rate",
        "hallucination_rate",
        "boundary_accuracy",
        "boundary_accuracy_matched",
        "format_compliance_corrected",
    }
)
GUARANTEED_TEXT = "guaranteed by the decoder"


def _paper(approach: str, key: CellKey) -> PaperRow | None:
    """The published row for a cell; none for other NER data than PharmaCoNER."""
    return paper_row(approach, key.model, key.corpus) if key.data == "pharmaconer" else None


def _paper_f1(row: PaperRow | None) -> str:
    return MISSING if row is None else f"{row.f1:.2f}"


def _prf_cells(scores: CellScores) -> list[str]:
    if not scores.cell.ok:
        return [FAILED] * len(PRF)
    return [with_interval(scores.summaries[name], scores.interval(name)) for name in PRF]


def _prf_csv(scores: CellScores) -> list[str]:
    fields: list[str] = []
    for name in PRF:
        summary, interval = scores.summaries[name], scores.interval(name)
        fields += [
            csv_percent(summary.mean),
            csv_percent(summary.std),
            csv_percent(interval.low if interval else None),
            csv_percent(interval.high if interval else None),
        ]
    return fields


def _prf_csv_header() -> list[str]:
    return [f"{name}_{part}" for name in PRF for part in ("mean", "std", "ci_low", "ci_high")]


def _documents(scores: CellScores) -> str:
    interval: Interval | None = scores.interval("f1")
    return "" if interval is None else str(interval.documents)


# the cell's own columns in both tables' CSVs (`key_csv`), before its setting, seeds and status
_KEY = (
    "approach",
    "model",
    "base_model",
    "corpus",
    "language",
    "epoch",
    "scale",
    "data",
    "budget",
    "pretrain_budget",
)
COORDINATES_CSV = [*_KEY, "setting", "seeds", "n_seeds", "n_failed", "status"]


def _coordinates_csv(scores: CellScores, setting: str) -> list[object]:
    cell = scores.cell
    return [
        *key_csv(cell.key, _KEY),
        setting,
        seed_list(cell),
        len(cell.runs),
        len(cell.failed),
        status(cell),
    ]


def _paper_table(rows: Sequence[PaperRow], generative: bool) -> str:
    header = ["Language", "Epoch", "Base model", *PRF_HEADERS]
    if generative:
        header = ["Base model", *PRF_HEADERS, *(h for _, h, p in GENERATIVE if p)]
    body = []
    for row in rows:
        scores = [f"{row.precision:.2f}", f"{row.recall:.2f}", f"{row.f1:.2f}"]
        if generative:
            extra = [f"{getattr(row, p):.2f}" for _, _, p in GENERATIVE if p]
            body.append([family_name(row.model), *scores, *extra])
        else:
            body.append([corpus_name(row.corpus), epoch_text(row.epoch), family_name(row.model), *scores])
    return markdown_table(header, body)


def _paper_notes(approach: str, generative: bool) -> list[str]:
    return ["## Published numbers (the paper)", SCORING_NOTE, _paper_table(paper_rows(approach), generative)]


PAPER_CSV = ["paper_epoch", "paper_precision", "paper_recall", "paper_f1"]


def _paper_csv(row: PaperRow | None) -> list[object]:
    if row is None:
        return ["", "", "", ""]
    return [
        "" if row.epoch is None else row.epoch,
        *(csv_number(v) for v in (row.precision, row.recall, row.f1)),
    ]


def tokencls_table(cells: Sequence[CellScores], n_resamples: int, seed: int) -> Table:
    """One row per token-classification cell (model x corpus x epoch, plus a Setting column when scale, data
    or budget differ), the paper's F1 beside."""
    setting = settings(s.cell.key for s in cells)
    show = any(setting.values())
    header = ["Language", "Epoch", "Base model", *(["Setting"] if show else []), "Seeds", *PRF_HEADERS]
    rows, csv_rows = [], []
    for scores in cells:
        key = scores.cell.key
        paper = _paper("tokencls", key)
        extra = [setting[key]] if show else []
        rows.append(
            [
                corpus_name(key.corpus),
                epoch_text(key.epoch),
                family_name(key.model),
                *extra,
                seeds_text(scores.cell),
                *_prf_cells(scores),
                _paper_f1(paper),
            ]
        )
        csv_rows.append(
            [
                *_coordinates_csv(scores, setting[key]),
                _documents(scores),
                *_prf_csv(scores),
                *_paper_csv(paper),
            ]
        )
    what = "Token classification on the test set (official PharmaCoNER rule, codalab: UNCLEAR ignored)."
    return Table(
        title="Token classification",
        caption=caption(what, [s.cell for s in cells], score_format(n_resamples, seed)),
        header=[*header, "Paper F1"],
        rows=rows,
        csv_header=[*COORDINATES_CSV, "documents", *_prf_csv_header(), *PAPER_CSV],
        csv_rows=csv_rows,
        notes=_paper_notes("tokencls", generative=False),
    )


def _generative_getters() -> list[Callable]:
    return [metric("test", name) for name, _, _ in GENERATIVE]


def decoding(key: CellKey) -> str:
    """The cell's seq2seq decoding (`approach.decoding`; records without it decoded freely)."""
    return dict(key.config).get("approach.decoding", "free")


def guaranteed(key: CellKey, name: str) -> bool:
    """Whether a generative metric of this cell is true by construction (constrained decoding)."""
    return name in GUARANTEED and decoding(key) == "constrained"


def _generative_text(cell, name: str, summary) -> str:
    if not cell.ok:
        return FAILED
    return GUARANTEED_TEXT if guaranteed(cell.key, name) else mean_std(summary)


def _generative_csv(key: CellKey, name: str, summary) -> list[str]:
    if guaranteed(key, name):
        return ["", ""]
    return [csv_percent(summary.mean), csv_percent(summary.std)]


def output_format(key: CellKey) -> str:
    """The seq2seq output format the cell asked for (`approach.format`; older records: the JSON list)."""
    return dict(key.config).get("approach.format", "json (no approach.format recorded)")


def seq2seq_table(cells: Sequence[CellScores], n_resamples: int, seed: int) -> Table:
    """One row per seq2seq cell: P/R/F1, the original generative metrics and their corrected variants."""
    with_corpus = any(s.cell.key.corpus != "none" for s in cells)
    setting = settings(s.cell.key for s in cells)
    show = any(setting.values())
    formats = sorted({output_format(s.cell.key) for s in cells})
    with_format = len(formats) > 1
    header = [
        "Base model",
        *(["Language", "Epoch"] if with_corpus else []),
        *(["Setting"] if show else []),
        "Decoding",
        *(["Format"] if with_format else []),
        "Seeds",
        *PRF_HEADERS,
        *(h for _, h, _ in GENERATIVE),
        "Paper F1",
    ]
    rows, csv_rows = [], []
    for scores in cells:
        cell, key = scores.cell, scores.cell.key
        paper = _paper("seq2seq", key)
        summaries = [cell.summary(get) for get in _generative_getters()]
        names = [name for name, _, _ in GENERATIVE]
        generative = [_generative_text(cell, n, s) for n, s in zip(names, summaries, strict=True)]
        rows.append(
            [
                family_name(key.model),
                *([corpus_name(key.corpus), epoch_text(key.epoch)] if with_corpus else []),
                *([setting[key]] if show else []),
                decoding(key),
                *([output_format(key)] if with_format else []),
                seeds_text(cell),
                *_prf_cells(scores),
                *generative,
                _paper_f1(paper),
            ]
        )
        generative_csv = [
            v for n, s in zip(names, summaries, strict=True) for v in _generative_csv(key, n, s)
        ]
        paper_generative = [
            csv_number(getattr(paper, p, None)) if paper and p else "" for _, _, p in GENERATIVE
        ]
        csv_rows.append(
            [
                *_coordinates_csv(scores, setting[key]),
                decoding(key),
                output_format(key),
                _documents(scores),
                *_prf_csv(scores),
                *generative_csv,
                *_paper_csv(paper),
                *paper_generative,
            ]
        )
    what = (
        "Seq2seq generation on the test set (official PharmaCoNER rule, codalab). Generative metrics: original "
        "definitions, with the corrected variants beside (clinical_ner/approaches/seq2seq/metrics.py). "
        f"`{GUARANTEED_TEXT}`: under constrained decoding JSON parse rate (1), hallucination (0), corrected "
        "format compliance (1) and boundary accuracy (the decoder places the offsets) hold whatever the model "
        "learned, so they are measured only where decoding is free."
    )
    what += f" Output format: {', '.join(formats) or 'none'}."
    return Table(
        title="Seq2seq",
        caption=caption(what, [s.cell for s in cells], score_format(n_resamples, seed)),
        header=header,
        rows=rows,
        csv_header=[
            *COORDINATES_CSV,
            "decoding",
            "format",
            "documents",
            *_prf_csv_header(),
            *(f"{name}_{part}" for name, _, _ in GENERATIVE for part in ("mean", "std")),
            *PAPER_CSV,
            *(f"paper_{name}" for name, _, _ in GENERATIVE),
        ],
        csv_rows=csv_rows,
        notes=_paper_notes("seq2seq", generative=True),
    )

"""The paper's published test-set numbers (percent), restated from its repository's README.

They were scored differently from our tables, so they are shown beside ours for reference, not as a like-for-like
comparison: the token-classification rows on sentence-level token indices (not character offsets) with an
unpublished patched copy of the official script, adjacent same-type entities merged; the seq2seq rows
micro-averaged over per-document sets after re-anchoring each prediction to the first occurrence of its text.
Ours score both approaches with the official PharmaCoNER rule (codalab) on character spans.
"""

from __future__ import annotations

from dataclasses import dataclass

SCORING_NOTE = (
    "Paper numbers were scored differently (token classification: sentence-level token indices with a patched "
    "official script, adjacent same-type entities merged; seq2seq: per-document sets after re-anchoring each "
    "prediction to the first occurrence of its text), so they are not directly comparable with ours "
    "(official rule on character spans)."
)


@dataclass(frozen=True)
class PaperRow:
    """One published row: coordinates as in our results.json, metrics in percent (None: not published)."""

    approach: str
    model: str
    corpus: str
    epoch: int | None
    precision: float
    recall: float
    f1: float
    json_parse_rate: float | None = None
    hallucination_rate: float | None = None
    boundary_accuracy: float | None = None
    format_compliance: float | None = None


PAPER_ROWS: tuple[PaperRow, ...] = (
    PaperRow("tokencls", "llama2", "none", None, 77.22, 72.46, 74.77),
    PaperRow("tokencls", "llama2", "bilingual", 2, 77.36, 73.61, 75.44),
    PaperRow("tokencls", "llama2", "en", 2, 76.02, 72.08, 74.00),
    PaperRow("tokencls", "llama2", "es", 1, 77.30, 73.17, 75.18),
    PaperRow("seq2seq", "llama3_1", "none", None, 80.40, 39.90, 53.30, 87.20, 14.45, 64.56, 99.54),
    PaperRow("seq2seq", "llama3_2", "none", None, 66.70, 40.10, 50.10, 90.00, 15.22, 67.93, 99.56),
    PaperRow("seq2seq", "llama3", "none", None, 67.90, 39.00, 49.60, 86.58, 11.31, 62.44, 100.00),
    PaperRow("seq2seq", "llama2", "none", None, 45.50, 13.20, 20.40, 73.20, 13.35, 41.33, 97.81),
)


def paper_row(approach: str, model: str, corpus: str) -> PaperRow | None:
    """The published row for these coordinates, if the paper has one (its epoch may differ from ours)."""
    for row in PAPER_ROWS:
        if (row.approach, row.model, row.corpus) == (approach, model, corpus):
            return row
    return None


def paper_rows(approach: str) -> list[PaperRow]:
    """The published rows of one approach, in the paper's order."""
    return [row for row in PAPER_ROWS if row.approach == approach]

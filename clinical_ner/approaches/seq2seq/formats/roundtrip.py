"""Gold round trip of an answer format: spans -> target answer -> parse -> spans, counted per document and per
mention (what tests/e2e/test_seq2seq_formats.py asserts and clinical_ner/analysis/format_roundtrip.py prints)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from clinical_ner.approaches.seq2seq.formats.base import AnswerFormat
from clinical_ner.approaches.seq2seq.units import make_units, unit_spans
from clinical_ner.data.types import Document


@dataclass
class RoundTrip:
    """How many documents came back with exactly their gold spans, and how many gold mentions came back."""

    documents: int = 0
    exact_documents: int = 0
    mentions: int = 0
    kept_mentions: int = 0

    @property
    def document_share(self) -> float:
        return self.exact_documents / self.documents if self.documents else 1.0

    @property
    def mention_share(self) -> float:
        return self.kept_mentions / self.mentions if self.mentions else 1.0


def round_trip(answer: AnswerFormat, docs: Sequence[Document], types: Sequence[str], unit: str) -> RoundTrip:
    """Write every unit's gold answer in `answer`'s format and parse it back (units cut as in training)."""
    counts = RoundTrip()
    for doc in docs:
        exact = True
        for part in make_units(doc, unit, doc.spans):
            gold = set(unit_spans(part, doc.spans))
            back = set(answer.parse(answer.target(part, doc.spans), part.text, types))
            counts.mentions += len(gold)
            counts.kept_mentions += len(gold & back)
            exact &= back == gold
        counts.documents += 1
        counts.exact_documents += exact
    return counts

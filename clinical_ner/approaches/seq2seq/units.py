"""Prompt units and answer targets: a unit is a document or a sentence of it; its target is the compact JSON
array of the mentions inside it, in text order, with offsets relative to the unit's text."""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from clinical_ner.data.text import split_sentences
from clinical_ner.data.types import Document, Span

KEYS = ("text", "type", "start", "end")
_OFFSET_VALUE = re.compile(r'"(?:start|end)":(\d+)')


@dataclass(frozen=True)
class TextUnit:
    """The text of one prompt: `doc.text[start:end]` of document `doc_id`."""

    doc_id: str
    start: int
    end: int
    text: str

    def to_document(self, span: Span) -> Span:
        """A span on the unit's text moved to document offsets."""
        return Span(span.start + self.start, span.end + self.start, span.type)


def make_units(doc: Document, unit: str, spans: Sequence[Span] = ()) -> list[TextUnit]:
    """The document's prompt units in text order. Sentences never cut one of `spans` (pass gold spans when
    training; at inference there are none, so a rare mention across a boundary cannot be found)."""
    if unit == "document":
        return [TextUnit(doc.id, 0, len(doc.text), doc.text)] if doc.text.strip() else []
    if unit != "sentence":
        raise ValueError(f"unknown unit {unit!r}; expected document or sentence")
    return [TextUnit(doc.id, s, e, doc.text[s:e]) for s, e in split_sentences(doc.text, spans)]


def unit_spans(unit: TextUnit, spans: Iterable[Span]) -> list[Span]:
    """Spans lying inside the unit, in unit offsets, sorted by (start, end, type)."""
    inside = [s for s in spans if unit.start <= s.start and s.end <= unit.end]
    return sorted(Span(s.start - unit.start, s.end - unit.start, s.type) for s in inside)


def target_entities(unit: TextUnit, spans: Iterable[Span]) -> list[dict]:
    """The unit's mentions as `{"text", "type", "start", "end"}` dicts in text order."""
    return [
        {"text": unit.text[s.start : s.end], "type": s.type, "start": s.start, "end": s.end}
        for s in unit_spans(unit, spans)
    ]


def to_json(entities: list[dict]) -> str:
    """Compact JSON (no spaces, accents kept): the exact answer string the model is trained to write."""
    return json.dumps([{k: e[k] for k in KEYS} for e in entities], ensure_ascii=False, separators=(",", ":"))


def offset_values(answer: str) -> list[tuple[int, int]]:
    """Character ranges of the `start` and `end` numbers in a compact JSON answer (a quote inside a text is
    escaped, so a mention cannot fake one)."""
    return [match.span(1) for match in _OFFSET_VALUE.finditer(answer)]

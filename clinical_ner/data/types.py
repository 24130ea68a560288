"""The single currency between stages: character spans on the original document text."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True, order=True)
class Span:
    """An entity mention: 0-based, end-exclusive character offsets into `Document.text`."""

    start: int
    end: int
    type: str


@dataclass
class Document:
    """One clinical case: its id (file stem), full text and gold (or predicted) spans, sorted."""

    id: str
    text: str
    spans: list[Span] = field(default_factory=list)

    def surface(self, span: Span) -> str:
        """The text a span covers."""
        return self.text[span.start : span.end]

"""Text utilities shared by both approaches: sentence ranges (never cutting a mention) and whitespace trimming."""

from __future__ import annotations

import bisect
import re
from collections.abc import Sequence

from clinical_ner.data.types import Span

# A sentence ends at . ? ! (plus closing quotes/brackets) when whitespace and an uppercase letter, digit or
# Spanish opening mark follow; ':' is not a boundary because lab-value lists ("Hemograma: Hb 12") belong together.
_SENTENCE_END_RE = re.compile(r"[.!?…]+[\"'»)\]]*(\s+)(?=\S)")


def split_sentences(text: str, spans: Sequence[Span] = ()) -> list[tuple[int, int]]:
    """Character ranges of the sentences of `text`, whitespace-stripped, never cutting inside a span.

    Boundaries: every newline, and `.`/`?`/`!` followed by whitespace then an uppercase letter, a digit or
    `¿`/`¡`. A boundary that falls inside a span is dropped, which merges the two pieces.
    """
    cuts = [match.start() for match in re.finditer("\n", text)]
    for match in _SENTENCE_END_RE.finditer(text):
        following = text[match.end()]
        if following.isupper() or following.isdigit() or following in "¿¡":
            cuts.append(match.start(1))
    covered = _merge_intervals(spans)
    starts = [start for start, _ in covered]
    ranges: list[tuple[int, int]] = []
    begin = 0
    for cut in sorted(set(cuts)) + [len(text)]:
        index = bisect.bisect_left(starts, cut) - 1
        if cut < len(text) and index >= 0 and covered[index][1] > cut:
            continue
        start, end = strip_span(text, begin, cut)
        if start < end:
            ranges.append((start, end))
        begin = cut
    return ranges


def _merge_intervals(spans: Sequence[Span]) -> list[tuple[int, int]]:
    merged: list[tuple[int, int]] = []
    for span in sorted(spans):
        if merged and span.start < merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], span.end))
        else:
            merged.append((span.start, span.end))
    return merged


def strip_span(text: str, start: int, end: int) -> tuple[int, int]:
    """Shrink `start..end` past surrounding whitespace."""
    while start < end and text[start].isspace():
        start += 1
    while end > start and text[end - 1].isspace():
        end -= 1
    return start, end

"""Model output -> character spans. Never raises, whatever the model wrote.

1. `original_array`: the original code's rule (slice from the first `[` to the last `]`, `json.loads` must give a
   list); it defines the JSON parse rate. `extract_items` falls back to salvaging every complete `{...}` object
   (prose around the answer, an array cut off by the token budget) so that a near miss still yields mentions.
2. `normalize_type`: upper case, accents removed (NFKD -> ASCII), spaces and hyphens to `_`; an exact match with a
   corpus type, else the closest by difflib ratio >= 0.7 (as the original), else UNCLEAR when the corpus has it.
3. `anchor_entities`: offsets are kept when they cover the mention's text; otherwise the mention is anchored to an
   occurrence of its text that no earlier mention took (the one nearest the offset the model wrote, else the first),
   so a repeated mention is not piled onto the first occurrence. Text absent from the input is dropped.
"""

from __future__ import annotations

import difflib
import json
import re
import unicodedata
from collections.abc import Sequence
from typing import Any

from clinical_ner.data.text import strip_span
from clinical_ner.data.types import Span

FUZZY_MIN_RATIO = 0.7
UNCLEAR = "UNCLEAR"
MAX_SALVAGE_ATTEMPTS = 2000  # `{` positions tried when salvaging; bounds the cost on pathological outputs
_SEPARATORS = re.compile(r"[\s\-]+")
_UNDERSCORES = re.compile(r"_+")
_DECODER = json.JSONDecoder()


def original_array(raw: str) -> list | None:
    """The original parse rule: `raw[first '[' : last ']' + 1]` must be JSON of a list; else None."""
    try:
        first, last = raw.find("["), raw.rfind("]")
        if first < 0 or last < first:
            return None
        value = json.loads(raw[first : last + 1])
    except (ValueError, RecursionError, TypeError):
        return None
    return value if isinstance(value, list) else None


def salvage_objects(raw: str) -> list[dict]:
    """Every complete JSON object found left to right (an object inside one already taken is skipped)."""
    found: list[dict] = []
    position, attempts = raw.find("{"), 0
    while position >= 0 and attempts < MAX_SALVAGE_ATTEMPTS:
        attempts += 1
        try:
            value, end = _DECODER.raw_decode(raw, position)
        except (ValueError, RecursionError):
            position = raw.find("{", position + 1)
            continue
        if isinstance(value, dict):
            found.append(value)
        position = raw.find("{", end)
    return found


def extract_items(raw: str) -> list[Any]:
    """The answer's elements: the original rule's list when it parses, else the salvaged objects."""
    if not isinstance(raw, str):
        return []
    array = original_array(raw)
    return array if array is not None else salvage_objects(raw)


def canonical_type(value: Any) -> str:
    """Upper case, accents stripped, runs of spaces/hyphens/underscores as one `_`."""
    text = unicodedata.normalize("NFKD", str(value).upper()).encode("ascii", "ignore").decode("ascii")
    return _UNDERSCORES.sub("_", _SEPARATORS.sub("_", text)).strip("_")


def normalize_type(value: Any, types: Sequence[str]) -> str | None:
    """The corpus type a written type stands for (exact after canonicalisation, else fuzzy), or UNCLEAR when the
    corpus has it, else None."""
    if value is None or isinstance(value, (dict, list)):
        return UNCLEAR if UNCLEAR in types else None
    wanted = canonical_type(value)
    by_canonical = {canonical_type(t): t for t in types}
    if wanted in by_canonical:
        return by_canonical[wanted]
    best, best_ratio = None, 0.0
    for canonical, original in by_canonical.items():
        ratio = difflib.SequenceMatcher(None, wanted, canonical).ratio()
        if ratio > best_ratio:
            best, best_ratio = original, ratio
    if best is not None and best_ratio >= FUZZY_MIN_RATIO:
        return best
    return UNCLEAR if UNCLEAR in types else None


def as_offset(value: Any) -> int | None:
    """An int offset from an int, an integral float or a digit string; None otherwise (bools are not offsets)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer() and abs(value) < 2**53:
        return int(value)
    if isinstance(value, str) and value.strip().isdigit():
        return int(value.strip())
    return None


def _occurrences(text: str, surface: str) -> list[int]:
    starts, position = [], text.find(surface)
    while position >= 0:
        starts.append(position)
        position = text.find(surface, position + 1)
    return starts


def anchor_entities(text: str, items: Sequence[Any], types: Sequence[str]) -> list[Span]:
    """Spans on `text` (the unit) for the parsed items, in the items' order; unusable items are skipped."""
    spans: list[Span] = []
    taken: set[tuple[int, int]] = set()
    for item in items if isinstance(items, (list, tuple)) else []:
        if not isinstance(item, dict) or not isinstance(item.get("text"), str):
            continue
        surface = item["text"].strip()
        entity_type = normalize_type(item.get("type"), types)
        if not surface or entity_type is None:
            continue
        start, end = as_offset(item.get("start")), as_offset(item.get("end"))
        if start is not None and end is not None and 0 <= start < end <= len(text):
            kept = strip_span(text, start, end)
            if text[kept[0] : kept[1]] == surface:
                taken.add(kept)
                spans.append(Span(kept[0], kept[1], entity_type))
                continue
        starts = _occurrences(text, surface)
        if not starts:
            continue  # not in the input: a hallucination
        free = [s for s in starts if (s, s + len(surface)) not in taken] or starts
        # the model's offset, even when wrong, usually points near the occurrence it meant
        chosen = min(free, key=lambda s: abs(s - start)) if start is not None else free[0]
        taken.add((chosen, chosen + len(surface)))
        spans.append(Span(chosen, chosen + len(surface), entity_type))
    # BRAT cannot store a mention across a line break
    return [s for s in spans if "\n" not in text[s.start : s.end] and "\r" not in text[s.start : s.end]]


def parse_spans(raw: str, text: str, types: Sequence[str]) -> list[Span]:
    """Spans on `text` from a raw model answer (never raises)."""
    try:
        return anchor_entities(text, extract_items(raw), types)
    except Exception:  # a parser bug must not end a long evaluation; the answer counts as empty)
        return []

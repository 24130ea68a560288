"""Character spans <-> BIO tags on sub-tokens, through the tokenizer's offset mapping.

A document is cut into sentences (training documents never inside a gold mention; inference never reads gold,
so dev/test/new text is cut the same whatever its annotations), each sentence is tokenized on its own with BOS
prepended, long sentences become overlapping windows, and every sub-token carries document character
offsets. Tags are derived from character spans and decoded back to character spans; `word_ids()` is never
used, so the same code serves SentencePiece and byte-level tokenizers.

Label positions (`LabelPosition`):
- `all`: every sub-token with text is labelled: `B-X` on the first sub-token overlapping a mention, `I-X` on the
  rest, `O` elsewhere. Whitespace-only sub-tokens (a lone `▁` or `Ġ`) are ignored (-100) and transparent.
- `first` / `last`: only the first / last sub-token of each word (`\\w+|[^\\w\\s]`) is labelled, with the word's
  tag; a decoded word takes the tag predicted at that sub-token and spans cover whole words.
A sub-token shared by several words labels them together (they form one unit).

Ill-formed tags at decoding (`IllFormedRule`); ignored positions are skipped, they neither break nor extend:
- `I-X` with no open span: `begin` opens a new X span (conlleval); `drop` ignores it.
- `I-Y` while an X span is open (type switch): `begin` closes X and opens Y; `drop` closes X and ignores the
  `I-Y`, so the following `I-Y` tags are dropped too until a `B-`.
- `B-X` always closes any open span and opens X; `O` closes.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from itertools import pairwise
from typing import Literal

from transformers import PreTrainedTokenizerBase

from clinical_ner.data.text import split_sentences, strip_span
from clinical_ner.data.types import Document, Span
from clinical_ner.errors import UserError

LabelPosition = Literal["all", "first", "last"]
IllFormedRule = Literal["begin", "drop"]

IGNORE = -100
NO_OFFSET = (-1, -1)
OUTSIDE = "O"
WORD_RE = re.compile(r"\w+|[^\w\s]")
_ALNUM_RE = re.compile(r"\w")


@dataclass(frozen=True)
class Unit:
    """A labelled position: the sub-token `token` carries the tag of the characters `start`..`end`."""

    token: int
    start: int
    end: int


@dataclass
class Window:
    """One model input: BOS + the sub-tokens of (part of) one sentence, with document character offsets.

    `offsets[i]` is the sub-token's character range in the document with surrounding whitespace trimmed
    (empty for whitespace-only sub-tokens); `NO_OFFSET` marks BOS. `labels` holds -100 where ignored.
    Positions `score_from <= i < score_to` are owned by this window: overlapping windows of one sentence
    partition its sub-tokens, so decoding reads each sub-token exactly once.
    """

    doc_id: str
    sentence: int
    token_start: int
    input_ids: list[int]
    offsets: list[tuple[int, int]]
    labels: list[int]
    score_from: int
    score_to: int


def bio_labels(types: Sequence[str]) -> list[str]:
    """`["O", "B-T1", "I-T1", ...]` over the sorted distinct entity types."""
    labels = [OUTSIDE]
    for entity_type in sorted(set(types)):
        labels += [f"B-{entity_type}", f"I-{entity_type}"]
    return labels


def label_units(offsets: Sequence[tuple[int, int]], text: str, label_position: LabelPosition) -> list[Unit]:
    """The labelled positions of a run of sub-tokens (trimmed document offsets, in order) and what each covers.

    Encoding and decoding both call this, so they always agree on which sub-token stands for which characters.
    """
    if label_position == "all":
        return [Unit(i, s, e) for i, (s, e) in enumerate(offsets) if s < e]
    if label_position not in ("first", "last"):
        raise UserError(f"unknown label position {label_position!r}; expected all, first or last")
    tokens = [(i, s, e) for i, (s, e) in enumerate(offsets) if s < e]
    if not tokens:
        return []
    first_token = 0
    units: list[Unit] = []
    for word in WORD_RE.finditer(text, tokens[0][1], max(e for _, _, e in tokens)):
        # Tokens come in text order, so the first one overlapping this word is at or after the previous word's.
        while first_token < len(tokens) and tokens[first_token][2] <= word.start():
            first_token += 1
        last_token = first_token
        while last_token + 1 < len(tokens) and tokens[last_token + 1][1] < word.end():
            last_token += 1
        if first_token >= len(tokens) or tokens[first_token][1] >= word.end():
            continue
        token = tokens[first_token if label_position == "first" else last_token][0]
        if units and units[-1].token == token:
            # One sub-token stands for several words: they are labelled (and decoded) together.
            units[-1] = Unit(token, units[-1].start, word.end())
        else:
            units.append(Unit(token, word.start(), word.end()))
    return units


def unit_tags(units: Sequence[Unit], spans: Sequence[Span]) -> list[str]:
    """Gold BIO tag of each unit: `B-X` on the first unit overlapping a mention X, `I-X` on the others."""
    ordered = sorted(spans)
    tags: list[str] = []
    index = 0
    started = -1
    for unit in units:
        while index < len(ordered) and ordered[index].end <= unit.start:
            index += 1
        if index < len(ordered) and ordered[index].start < unit.end:
            span = ordered[index]
            tags.append(f"{'I' if started == index else 'B'}-{span.type}")
            started = index
        else:
            tags.append(OUTSIDE)
    return tags


def encode_document(
    tokenizer: PreTrainedTokenizerBase,
    doc: Document,
    label2id: Mapping[str, int],
    label_position: LabelPosition,
    max_length: int,
    stride: int,
    cut_at_gold: bool = False,
) -> list[Window]:
    """Windows of BOS + sentence sub-tokens with gold labels from `doc.spans` (all `O` when it has none).

    With `cut_at_gold` (training only) no sentence boundary falls inside a gold mention; otherwise the cuts
    ignore `doc.spans`, so the model's inputs never depend on gold (the labels, for scoring, still do).

    A sentence longer than `max_length` (BOS included) becomes windows overlapping by `stride` sub-tokens;
    each sub-token is owned by the window where it sits farther from an edge.
    """
    bos = [tokenizer.bos_token_id] if tokenizer.bos_token_id is not None else []
    capacity = max_length - len(bos)
    if not 0 <= stride < capacity:
        raise UserError(f"stride must be in [0, {capacity}) for max_length {max_length}, got {stride}")
    unknown = {f"{p}-{s.type}" for s in doc.spans for p in "BI"} - set(label2id)
    if unknown or OUTSIDE not in label2id:
        raise UserError(f"labels missing from label2id in document {doc.id}: {sorted(unknown) or [OUTSIDE]}")
    sentences = split_sentences(doc.text, doc.spans if cut_at_gold else ())
    if not sentences:
        return []
    # verbose=False: a sentence longer than model_max_length is cut into windows below, not an error
    encoded = tokenizer(
        [doc.text[s:e] for s, e in sentences],
        add_special_tokens=False,
        return_offsets_mapping=True,
        verbose=False,
    )
    windows: list[Window] = []
    for number, ((shift, _), ids, raw) in enumerate(
        zip(sentences, encoded["input_ids"], encoded["offset_mapping"], strict=True)
    ):
        offsets = [strip_span(doc.text, shift + s, shift + e) for s, e in raw]
        units = label_units(offsets, doc.text, label_position)
        labels = [IGNORE] * len(ids)
        for unit, tag in zip(units, unit_tags(units, doc.spans), strict=True):
            labels[unit.token] = label2id[tag]
        for start, end, own_from, own_to in _window_plan(len(ids), capacity, stride):
            windows.append(
                Window(
                    doc_id=doc.id,
                    sentence=number,
                    token_start=start,
                    input_ids=bos + ids[start:end],
                    offsets=[NO_OFFSET] * len(bos) + offsets[start:end],
                    labels=[IGNORE] * len(bos) + labels[start:end],
                    score_from=own_from - start + len(bos),
                    score_to=own_to - start + len(bos),
                )
            )
    return windows


def _window_plan(length: int, capacity: int, stride: int) -> list[tuple[int, int, int, int]]:
    """(start, end, owned_from, owned_to) in sentence sub-token indices for each window."""
    starts = [0]
    while starts[-1] + capacity < length:
        starts.append(starts[-1] + capacity - stride)
    # Ownership changes hands in the middle of each overlap, where both windows give equal context.
    bounds = [0] + [(nxt + prev + capacity) // 2 for prev, nxt in pairwise(starts)] + [length]
    return [
        (start, min(start + capacity, length), bounds[i], bounds[i + 1]) for i, start in enumerate(starts)
    ]


def decode_tags(
    window_or_offsets: Window | Sequence[tuple[int, int]],
    tag_ids: Sequence[int],
    id2label: Mapping[int, str],
    label_position: LabelPosition,
    rule: IllFormedRule,
    text: str,
) -> list[Span]:
    """Spans predicted on one window (its owned positions only) or on one run of offsets (`NO_OFFSET` skipped).

    For documents use `decode_document`: a mention or word cut by a window's ownership edge is only whole
    once the sentence's windows are stitched together.
    """
    if isinstance(window_or_offsets, Window):
        window = window_or_offsets
        positions = range(window.score_from, window.score_to)
        offsets = [window.offsets[i] for i in positions]
        tags = [id2label.get(int(tag_ids[i]), OUTSIDE) for i in positions]
    else:
        kept = [i for i, offset in enumerate(window_or_offsets) if tuple(offset) != NO_OFFSET]
        offsets = [tuple(window_or_offsets[i]) for i in kept]
        tags = [id2label.get(int(tag_ids[i]), OUTSIDE) for i in kept]
    return sorted(set(_decode_run(offsets, tags, label_position, rule, text)))


def decode_document(
    windows: Sequence[Window],
    predictions: Sequence[Sequence[int]],
    id2label: Mapping[int, str],
    label_position: LabelPosition,
    rule: IllFormedRule,
    text: str,
) -> list[Span]:
    """Spans predicted on one document from its windows (owned positions, stitched per sentence), sorted."""
    if len(windows) != len(predictions):
        raise ValueError(f"{len(windows)} windows but {len(predictions)} prediction rows")
    order = sorted(range(len(windows)), key=lambda i: (windows[i].sentence, windows[i].token_start))
    spans: set[Span] = set()
    offsets: list[tuple[int, int]] = []
    tags: list[str] = []
    for position, index in enumerate(order):
        window, row = windows[index], predictions[index]
        for i in range(window.score_from, window.score_to):
            offsets.append(window.offsets[i])
            tags.append(id2label.get(int(row[i]), OUTSIDE))
        last = position + 1 == len(order) or windows[order[position + 1]].sentence != window.sentence
        if last:
            spans.update(_decode_run(offsets, tags, label_position, rule, text))
            offsets, tags = [], []
    return sorted(spans)


def _decode_run(
    offsets: Sequence[tuple[int, int]],
    tags: Sequence[str],
    label_position: LabelPosition,
    rule: IllFormedRule,
    text: str,
) -> list[Span]:
    if rule not in ("begin", "drop"):
        raise UserError(f"unknown ill-formed tag rule {rule!r}; expected begin or drop")
    spans: list[Span] = []
    current: list = []  # [type, start, end] of the open span, or empty
    for unit in label_units(offsets, text, label_position):
        prefix, _, entity_type = tags[unit.token].partition("-")
        if prefix == "I" and current and current[0] == entity_type:
            current[2] = unit.end
            continue
        if current:
            spans.append(_finish(current, text))
            current = []
        if prefix == "B" or (prefix == "I" and rule == "begin"):
            current = [entity_type, _trim_glued_punctuation(text, unit.start, unit.end), unit.end]
    if current:
        spans.append(_finish(current, text))
    return [span for span in spans if span.start < span.end]


def _finish(current: list, text: str) -> Span:
    start, end = strip_span(text, current[1], current[2])
    return Span(start, end, current[0])


def _trim_glued_punctuation(text: str, start: int, end: int) -> int:
    """Where a span really starts inside its first unit: after punctuation glued to a word ("(PSA" -> "PSA").

    Llama 3's pre-split glues one punctuation mark to the letters after it; mentions almost never start with
    punctuation (1 in 7,619 in PharmaCoNER), so the mark is taken to be outside the mention.
    """
    words = list(WORD_RE.finditer(text, start, end))
    if len(words) > 1 and not _ALNUM_RE.match(words[0].group()):
        for word in words:
            if _ALNUM_RE.match(word.group()):
                return word.start()
    return start


def tags_for_seqeval(
    windows: Sequence[Window], predictions: Sequence[Sequence[int]], id2label: Mapping[int, str]
) -> tuple[list[list[str]], list[list[str]]]:
    """Gold and predicted tag strings per window over its owned, labelled positions (for seqeval)."""
    gold: list[list[str]] = []
    predicted: list[list[str]] = []
    for window, row in zip(windows, predictions, strict=True):
        positions = [i for i in range(window.score_from, window.score_to) if window.labels[i] != IGNORE]
        gold.append([id2label[window.labels[i]] for i in positions])
        predicted.append([id2label.get(int(row[i]), OUTSIDE) for i in positions])
    return gold, predicted

"""The interface every answer format implements, and what the copy formats (inline, words) share.

A format decides what the model is trained to write for a unit (`target`), how any answer becomes character
spans on the unit (`parse`, never raises), the line of the instruction that describes it (`instruction`, fills
`{format}` in `approach.prompt.instruction`), the byte automaton constrained decoding follows (`grammar`) and
the metrics that say what free decoding got wrong (`metrics`).

Copy formats write the unit's text with insertions, so their parse is exact: `aligned` walks the answer through
the format's own automaton (the language constrained decoding writes) and reads spans off its states; an answer
that is not in that language (free decoding) is read structurally (`read`: copied text + spans on it) and its
spans are moved onto the unit through a character alignment of the copy with the unit (difflib), keeping only
spans whose text is unchanged.
"""

from __future__ import annotations

import difflib
import re
from abc import ABC, abstractmethod
from collections.abc import Iterable, Sequence
from typing import ClassVar, Protocol

from clinical_ner.approaches.seq2seq.grammar import DONE, START, State
from clinical_ner.approaches.seq2seq.metrics import Sample
from clinical_ner.approaches.seq2seq.units import TextUnit
from clinical_ner.data.types import Span

WORD = re.compile(r"[^\W_]+|\S")  # a run of letters and digits, or one other non-space character


class Grammar(Protocol):
    """A byte automaton over answers (approaches/seq2seq/grammar.py explains the state conventions)."""

    def reserve(self, state: State) -> int:
        """Bytes the shortest complete answer still needs from `state`, plus the longest marker that could open
        next: when the token budget left falls to this, `finishing` allows only that shortest way."""

    def successors(self, state: State, finishing: bool) -> list[tuple[int, State]]: ...

    def entity_sign(self, state: State, after: State) -> int:
        """How a token leading from `state` to `after` is biased by `entity_bias` (favouring entities): -1 where
        it ends the answer (closes the JSON list), +1 where it opens a mention (a marker, a `B-` label), else 0."""


class AnswerFormat(ABC):
    """One way of writing a unit's mentions as an answer (one module per format in this folder)."""

    name: ClassVar[str]
    instruction: ClassVar[str]  # Spanish line describing the answer; fills `{format}` in the instruction
    guaranteed: ClassVar[tuple[str, ...]]  # metric values constrained decoding guarantees (by construction)
    logged: ClassVar[tuple[str, ...]]  # validity metrics logged at each validation beside P/R/F1
    copies_input: ClassVar[bool] = False  # the answer is the unit's text with insertions

    @abstractmethod
    def target(self, unit: TextUnit, spans: Iterable[Span]) -> str:
        """The answer the model is trained to write for `unit` (gold `spans` in document offsets)."""

    def unlearned(self, answer: str, offset_loss: bool) -> list[tuple[int, int]]:
        """Character ranges of `answer` left out of the loss (JSON offsets when they are not learned)."""
        return []

    @abstractmethod
    def parse(self, raw: str, text: str, types: Sequence[str]) -> list[Span]:
        """Spans on `text` (the unit) from a raw answer; never raises."""

    @abstractmethod
    def grammar(self, text: str, types: Sequence[str], whole_words: bool, earliest: bool) -> Grammar:
        """The automaton constrained decoding follows for one unit."""

    @abstractmethod
    def metrics(self, samples: Sequence[Sample], types: Sequence[str]) -> dict[str, float | int]:
        """What the answers got wrong as answers (beside the span scores every format gets)."""

    def check_types(self, types: Sequence[str]) -> None:
        """Raise a UserError when the format cannot write these types."""
        return None  # every type can be written unless a format says otherwise

    def budget(self, max_new_tokens: int, text_tokens: int) -> int:
        """New tokens allowed for a unit of `text_tokens` tokens (`approach.max_new_tokens` for a list; a copy
        format adds what copying the unit costs)."""
        return max_new_tokens


def drop_line_breaks(text: str, spans: Iterable[Span]) -> list[Span]:
    """BRAT cannot store a mention across a line break."""
    return [s for s in spans if "\n" not in text[s.start : s.end] and "\r" not in text[s.start : s.end]]


def char_offsets(data: bytes) -> dict[int, int]:
    """Byte offset of every character boundary of UTF-8 `data` -> character offset."""
    offsets, char = {}, 0
    for index, byte in enumerate(data):
        if byte & 0xC0 != 0x80:  # not a continuation byte
            offsets[index] = char
            char += 1
    offsets[len(data)] = char
    return offsets


class CopyFormat(AnswerFormat):
    """A format whose answer is the unit's text with markers inserted (parse exact, copy checked). Its grammar
    also has `guess(state)`: the likeliest next byte and state (the text copied, no mention) or None, which copy
    drafts follow (approaches/seq2seq/decoding.py)."""

    copies_input = True
    guaranteed = ("unparseable_rate", "copy_mismatch_rate")
    logged = ("unparseable_rate", "copy_mismatch_rate")

    def budget(self, max_new_tokens: int, text_tokens: int) -> int:
        # free decoding: the copy's tokens, with `max_new_tokens` for the markers
        return max_new_tokens + text_tokens

    def constrained_budget(self, max_new_tokens: int, text: str, types: Sequence[str]) -> int:
        """New tokens for a constrained answer: `max_new_tokens` for the markers and labels beyond the shortest
        answer, plus that answer's bytes (a token writes at least one), so the copy is always complete: once the
        budget left falls to what finishing needs, no marker opens (`reserve`)."""
        return max_new_tokens + self.grammar(text, types, False, False).reserve(START) + 1

    @abstractmethod
    def read(self, raw: str, types: Sequence[str]) -> tuple[str, list[Span], bool]:
        """(copied text, spans on it, well-formed) of any answer, without looking at the unit."""

    def aligned(self, raw: str, text: str, types: Sequence[str]) -> list[Span] | None:
        """Spans when `raw` is exactly in the format's language for `text` (what constrained decoding writes);
        None otherwise. Spans are read off the automaton's path (`spans_of`)."""
        grammar = self.grammar(text, types, whole_words=False, earliest=False)
        state, spans, chars = START, [], char_offsets(text.encode("utf-8"))
        for byte in raw.encode("utf-8"):
            following = dict(grammar.successors(state, finishing=False))
            if byte not in following:
                return None
            spans += self.spans_of(grammar, state, byte, following[byte], chars)
            state = following[byte]
        return spans if state == DONE else None

    @abstractmethod
    def spans_of(self, grammar, before: State, byte: int, after: State, chars: dict[int, int]) -> list[Span]:
        """The spans (character offsets) the transition `before --byte--> after` of `grammar` completes."""

    def parse(self, raw: str, text: str, types: Sequence[str]) -> list[Span]:
        try:
            exact = self.aligned(raw, text, types)
            if exact is not None:
                return drop_line_breaks(text, exact)
            copy, spans, _ = self.read(raw, types)
            return drop_line_breaks(text, move_spans(copy, text, spans))
        except Exception:  # a parser bug must not end a long evaluation; the answer counts as empty
            return []

    def metrics(self, samples: Sequence[Sample], types: Sequence[str]) -> dict[str, float | int]:
        """`unparseable_rate`: share of answers that are not well-formed (a marker or label the format does not
        have, an unclosed or stray marker, a word without its label); `copy_mismatch_rate`: share of answers
        whose copied text (markers removed) differs from the unit's text (a hallucinated, dropped or changed
        character, or an answer cut by the token budget). Both 0 by construction with constrained decoding."""
        unparseable = mismatched = 0
        for sample in samples:
            if self.aligned(sample.raw, sample.text, types) is not None:
                continue
            copy, _, well_formed = self.read(sample.raw, types)
            unparseable += not well_formed
            mismatched += copy.strip() != sample.text.strip()
        n = len(samples)
        return {
            "samples": n,
            "unparseable_rate": unparseable / n if n else 0.0,
            "copy_mismatch_rate": mismatched / n if n else 0.0,
        }


def move_spans(copy: str, text: str, spans: Sequence[Span]) -> list[Span]:
    """Spans on `copy` moved onto `text` through a character alignment; a span is kept when both of its edges
    fall in aligned stretches and the text between them is unchanged."""
    if copy == text:
        return list(spans)
    matcher = difflib.SequenceMatcher(None, copy, text, autojunk=False)
    mapping: dict[int, int] = {}
    for a, b, size in matcher.get_matching_blocks():
        for k in range(size + 1):
            mapping.setdefault(a + k, b + k)
    moved = []
    for span in spans:
        start, end = mapping.get(span.start), mapping.get(span.end)
        if start is None or end is None or end <= start:
            continue
        if text[start:end] == copy[span.start : span.end]:
            moved.append(Span(start, end, span.type))
    return moved

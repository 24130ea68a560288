"""`inline`: the unit's text copied character for character, each mention wrapped as `{TYPE mention}`.

Markers: `{` opens, the type name and one space follow, `}` closes. Braces are single tokens in byte-level and
SentencePiece vocabularies alike (cheap), and they do not occur in PharmaCoNER's text (0 `{` and 1 `}` in its
1,000 documents), so they cannot be taken for copied text there; where a unit does contain one, copying wins
(the automaton offers a marker only where the next character of the text is not that marker's first byte), so
the answer still reads back unambiguously. Type names never contain a space, so the space ends the type.
Mentions never nest or overlap (PharmaCoNER has none); an overlapping gold mention is left out of the target.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from clinical_ner.approaches.seq2seq.formats.base import CopyFormat, char_offsets
from clinical_ner.approaches.seq2seq.grammar import DONE, START, State
from clinical_ner.approaches.seq2seq.units import TextUnit, unit_spans
from clinical_ner.data.types import Span

OPEN, SEP, CLOSE = "{", " ", "}"
_OPEN, _SEP, _CLOSE, _SPACE = ord(OPEN), ord(SEP), ord(CLOSE), ord(" ")


def _in_marker(state: State) -> bool:
    """Whether `state` is inside a marker: writing its type, or copying its mention."""
    return state not in (START, DONE) and (state[0] == "t" or state[2] is not None)


def _inside_word(text: str, index: int) -> bool:
    return 0 < index < len(text) and text[index - 1].isalnum() and text[index].isalnum()


class InlineGrammar:
    """Copy the text byte by byte; at a character boundary where a mention may start, open a marker of a known
    type; where it may end (after at least one character), close it. States: `("c", pos, open)` (pos: byte
    offset in the text, open: None or (type, start byte)), `("t", prefix, pos)` inside a type name, DONE once
    the whole text is copied with no marker open."""

    def __init__(self, text: str, types: Sequence[str], whole_words: bool = False) -> None:
        self.data = text.encode("utf-8")
        self.types = [t.encode("utf-8") for t in types]
        chars = char_offsets(self.data)
        self.starts, self.ends = set(), set()
        for byte, index in chars.items():
            cuts = whole_words and _inside_word(text, index)
            if index < len(text) and not text[index].isspace() and not cuts:
                self.starts.add(byte)
            if index > 0 and not text[index - 1].isspace() and not cuts:
                self.ends.add(byte)
        self.marker = max((len(t) for t in self.types), default=0) + 3  # `{TYPE ` and `}`
        self.start: State = self._at(0, None) if self.data else DONE  # after START's optional space

    def reserve(self, state: State) -> int:
        """The rest of the text, the type being written and its closing brace, and the longest marker."""
        if state in (START, DONE):
            pos, extra = (0, 1) if state == START else (len(self.data), 0)
        else:
            pos, extra = state[-1] if state[0] == "t" else state[1], 2 + self.marker
        return len(self.data) - pos + extra + self.marker

    def _at(self, pos: int, open_: tuple | None) -> State:
        return DONE if pos == len(self.data) and open_ is None else ("c", pos, open_)

    def entity_sign(self, state: State, after: State) -> int:
        """+1 for a token that opens a marker (what `entity_bias` encourages), else 0."""
        return 1 if _in_marker(after) and not _in_marker(state) else 0

    def successors(self, state: State, finishing: bool) -> list[tuple[int, State]]:
        """(next byte, state after it) for every byte the format allows in `state`."""
        if state == START:  # one leading space allowed first: SentencePiece writes its dummy prefix
            lead = [] if finishing or self.data[:1] == b" " else [(_SPACE, self.start)]
            return [*self.successors(self.start, finishing), *lead] if self.data else []
        kind = state[0]
        if kind == "t":
            return self._type(state)
        if kind != "c":
            return []  # done: only a stop token may follow
        pos, open_ = state[1], state[2]
        copy = self.data[pos] if pos < len(self.data) else None
        out = [] if copy is None else [(copy, self._at(pos + 1, open_))]
        if open_ is None and pos in self.starts and copy != _OPEN and not finishing:
            out.append((_OPEN, ("t", b"", pos)))
        if open_ is not None and pos in self.ends and pos > open_[1] and copy != _CLOSE:
            out.append((_CLOSE, self._at(pos, None)))
        return out

    def guess(self, state: State) -> tuple[int, State] | None:
        """The likeliest next byte and its state, for drafts: copy the text, close an open marker at the first
        word end (most mentions are one word), and write the first type of the (sorted) list once a marker is open
        (PharmaCoNER's first, NORMALIZABLES, is also its most common)."""
        if state == START:
            state = self.start
        if state == DONE:
            return None
        options = self.successors(state, finishing=False)
        if state[0] == "t":
            return options[0] if options else None  # successors follow the type list's order
        pos, open_ = state[1], state[2]
        word_end = pos == len(self.data) or not chr(self.data[pos]).isalnum()
        close = [option for option in options if option[0] == _CLOSE]
        if open_ is not None and close and word_end:
            return close[0]
        return options[0] if options else None  # the copied byte comes first

    def _type(self, state: State) -> list[tuple[int, State]]:
        prefix, pos = state[1], state[2]
        out: dict[int, State] = {}
        for name in self.types:
            if name == prefix:
                out[_SEP] = ("c", pos, (name.decode("utf-8"), pos))
            elif name.startswith(prefix):
                out[name[len(prefix)]] = ("t", name[: len(prefix) + 1], pos)
        return list(out.items())


class InlineFormat(CopyFormat):
    """Mentions wrapped in typed braces inside a copy of the text."""

    name = "inline"
    instruction = (
        "Contesta copiando el texto carácter a carácter y marca cada mención como {TIPO mención}, con uno de "
        "los tipos anteriores; no cambies nada más."
    )

    def target(self, unit: TextUnit, spans: Iterable[Span]) -> str:
        parts, position, last_end = [], 0, 0
        for span in unit_spans(unit, spans):
            if span.start < last_end:
                continue  # an overlapping mention cannot be written inline
            parts += [
                unit.text[position : span.start],
                OPEN,
                span.type,
                SEP,
                unit.text[span.start : span.end],
            ]
            parts.append(CLOSE)
            position = last_end = span.end
        return "".join([*parts, unit.text[position:]])

    def grammar(self, text: str, types: Sequence[str], whole_words: bool, earliest: bool) -> InlineGrammar:
        return InlineGrammar(text, types, whole_words)

    def spans_of(
        self, grammar: InlineGrammar, before: State, byte: int, after: State, chars: dict[int, int]
    ) -> list[Span]:
        # only the closing marker leaves a `c` state with a mention open for one with none
        if before[0] != "c" or before[2] is None or (after != DONE and after[2] is not None):
            return []
        name, start = before[2]
        return [Span(chars[start], chars[before[1]], name)]

    def read(self, raw: str, types: Sequence[str]) -> tuple[str, list[Span], bool]:
        known = set(types)
        copy: list[str] = []
        spans: list[Span] = []
        well_formed, open_, index, length = True, None, 0, 0
        while index < len(raw):
            char = raw[index]
            if char == OPEN and open_ is None:
                sep = raw.find(SEP, index + 1)
                name = raw[index + 1 : sep] if sep > index else ""
                if name in known:
                    open_, index = (name, length), sep + 1
                    continue
                well_formed = False
            elif char == CLOSE and open_ is not None:
                if length > open_[1]:
                    spans.append(Span(open_[1], length, open_[0]))
                open_, index = None, index + 1
                continue
            elif char in (OPEN, CLOSE):
                well_formed = False
            copy.append(char)
            length += 1
            index += 1
        return "".join(copy), spans, well_formed and open_ is None

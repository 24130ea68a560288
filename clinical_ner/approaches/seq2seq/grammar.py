"""A byte-level automaton for the answer schema, with every `text` copied from the input unit.

Accepted answers (compact JSON, as the training targets are written):
`[]` or `[{"text":"T","type":"Y","start":S,"end":E},...]` where T is a substring of the unit text (it starts on a
non-space character and contains no character JSON would escape: quotes, backslashes, control characters), Y is a
corpus type, S is the character offset of an occurrence of T and E = S + len(T); entities come in text order
without overlap (each S >= the previous E), as the training targets are written.

States are plain tuples (hashable, immutable) so a search can branch freely:
`("start",)` before `[` (one leading space allowed: SentencePiece writes `▁[`), `("open",)` after `[`, `("obj", next)`
after `}` (next: the byte offset from which the following text may start), `("lit", rest, then)` forced bytes, `("text", positions, nbytes)` inside a text (positions: byte
offsets in the unit where each matching occurrence continues), `("type", prefix, starts, nchars)`,
`("num", digits, starts, nchars)` for the start offset, `("done",)` after `]`.
`finishing=True` allows only the shortest way to a closed array (used when the token budget runs out).
"""

from __future__ import annotations

import re
from collections.abc import Sequence

State = tuple

START: State = ("start",)
DONE: State = ("done",)
_OPEN: State = ("open",)
_TEXT_KEY = b'{"text":"'
_QUOTE, _COMMA, _SPACE = ord('"'), ord(","), ord(" ")
_WORDS = re.compile(r"[^\W_]+")  # runs of letters and digits (str.isalnum)


def _unusable(char: str) -> bool:
    return char in '"\\' or ord(char) < 0x20 or ord(char) == 0x7F


def _inside_word(text: str, index: int) -> bool:
    """True when a span edge at character `index` would cut a word in two (letters or digits on both sides)."""
    return 0 < index < len(text) and text[index - 1].isalnum() and text[index].isalnum()


class SpanGrammar:
    """The automaton for one unit text and a set of types. `whole_words`: a text may neither start nor end
    inside a word (0.2% of PharmaCoNER mentions do; fragments like `a` of `tumoral` are then impossible).
    `earliest`: a text repeated in the unit is its earliest occurrence after the previous entity, so the start
    digits are forced; for a model that never learned them (offsets out of the loss), they would otherwise
    pick the occurrence and, as entities come in text order, a late pick loses every mention before it."""

    def __init__(
        self, text: str, types: Sequence[str], whole_words: bool = False, earliest: bool = False
    ) -> None:
        self.earliest = earliest
        self.data = text.encode("utf-8")
        self.types = [t.encode("utf-8") for t in types]
        self.usable = bytearray(len(self.data))
        self.char_at: dict[int, int] = {}  # byte offset of each character boundary -> character offset
        self.ends: set[int] = set()  # byte offsets where a text may end
        starts: list[int] = []
        offset = 0
        for index, char in enumerate(text):
            self.char_at[offset] = index
            cuts = whole_words and _inside_word(text, index)
            if not cuts:
                self.ends.add(offset)
            width = len(char.encode("utf-8"))
            if not _unusable(char):
                self.usable[offset : offset + width] = b"\x01" * width
                if not char.isspace() and not cuts:
                    starts.append(offset)
            offset += width
        self.char_at[offset] = len(text)
        self.ends.add(offset)
        self.byte_at = {char: byte for byte, char in self.char_at.items()}  # character offset -> byte offset
        self.text_start: State = ("text", tuple(starts), 0)
        # bytes of the longest shortest way to `]` from any state: the rest of `{"text":"` (9), a character (4)
        # or, with whole words, the rest of the longest word,
        # `","type":"` and `","start":` (20), a type, `,"end":` (7), two offsets, `}]` (2), plus slack
        digits = len(str(len(text)))
        word = max((len(w.encode("utf-8")) for w in _WORDS.findall(text)), default=0) if whole_words else 0
        self.finish_bytes = (
            9 + max(4, word) + 20 + max((len(t) for t in self.types), default=0) + 7 + 2 * digits + 2 + 4
        )

    def successors(self, state: State, finishing: bool) -> list[tuple[int, State]]:
        """(next byte, state after it) for every byte the schema allows in `state`."""
        kind = state[0]
        if kind == "lit":
            rest, then = state[1], state[2]
            return [(rest[0], ("lit", rest[1:], then) if len(rest) > 1 else then)]
        if kind == "text":
            return self._text(state, finishing)
        if kind == "type":
            return self._type(state)
        if kind == "num":
            return self._number(state)
        if kind == "start":
            # one leading space at most (SentencePiece writes `▁[`): a model cannot stall on spaces
            return [(ord("["), _OPEN)] if finishing else [(ord("["), _OPEN), (_SPACE, ("lit", b"[", _OPEN))]
        if kind in ("open", "obj"):
            close = [(ord("]"), DONE)]
            # entities in text order without overlap, as the targets are written: the next starts after this end
            starts = (
                self.text_start[1]
                if kind == "open"
                else tuple(s for s in self.text_start[1] if s >= state[1])
            )
            if finishing or not starts:
                return close
            entry = _TEXT_KEY if kind == "open" else b"," + _TEXT_KEY
            return [*close, (entry[0], ("lit", entry[1:], ("text", starts, 0)))]
        return []  # done: only a stop token may follow

    def _text(self, state: State, finishing: bool) -> list[tuple[int, State]]:
        positions, length = state[1], state[2]
        ends = [p for p in positions if p in self.ends]
        if length and ends:
            first = ends[0] - length
            starts = tuple(sorted({self.char_at[p - length] for p in ends}))
            if self.earliest:
                starts = starts[:1]
            nchars = self.char_at[first + length] - self.char_at[first]
            close = (_QUOTE, ("lit", b',"type":"', ("type", b"", starts, nchars)))
            if finishing:
                return [close]
        else:
            close = None
        following: dict[int, list[int]] = {}
        for p in positions:
            if p < len(self.data) and self.usable[p]:
                following.setdefault(self.data[p], []).append(p + 1)
        out = [(byte, ("text", tuple(ps), length + 1)) for byte, ps in following.items()]
        return [*out, close] if close else out

    def _type(self, state: State) -> list[tuple[int, State]]:
        prefix, starts, nchars = state[1], state[2], state[3]
        out: dict[int, State] = {}
        for name in self.types:
            if name == prefix:
                number = ("num", b"", starts, nchars)
                out[_QUOTE] = ("lit", b',"start":', number)
            elif name.startswith(prefix):
                out[name[len(prefix)]] = (
                    "type",
                    prefix + name[len(prefix) : len(prefix) + 1],
                    starts,
                    nchars,
                )
        return list(out.items())

    def _number(self, state: State) -> list[tuple[int, State]]:
        digits, starts, nchars = state[1], state[2], state[3]
        out: dict[int, State] = {}
        for start in starts:
            written = str(start).encode()
            if written == digits:
                after = ("obj", self.byte_at[start + nchars])
                out[_COMMA] = ("lit", b'"end":' + str(start + nchars).encode() + b"}", after)
            elif written.startswith(digits):
                out[written[len(digits)]] = ("num", written[: len(digits) + 1], starts, nchars)
        return list(out.items())

    def reserve(self, state: State) -> int:
        """Bytes kept for the shortest way to a closed array: finishing starts when the budget left is this."""
        return self.finish_bytes

    def entity_sign(self, state: State, after: State) -> int:
        """-1 for a token that closes the array (what `entity_bias` discourages), else 0."""
        return -1 if after == DONE and state != DONE else 0

    def advance(self, state: State, data: bytes) -> State | None:
        """The state after `data`, or None when the schema does not allow it."""
        for byte in data:
            step = dict(self.successors(state, finishing=False))
            if byte not in step:
                return None
            state = step[byte]
        return state

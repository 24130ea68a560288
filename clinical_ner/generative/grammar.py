"""A byte-level automaton for the answer schema, with every `text` copied from the input unit.

Accepted answers (compact JSON, as the training targets are written):
`[]` or `[{"text":"T","type":"Y","start":S,"end":E},...]` where T is a substring of the unit text (it starts on a
non-space character and contains no character JSON would escape: quotes, backslashes, control characters), Y is a
corpus type, S is the character offset of an occurrence of T and E = S + len(T).

States are plain tuples (hashable, immutable) so a search can branch freely:
`("start",)` before `[` (one leading space allowed: SentencePiece writes `▁[`), `("open",)` after `[`, `("obj",)`
after `}`, `("lit", rest, then)` forced bytes, `("text", positions, nbytes)` inside a text (positions: byte
offsets in the unit where each matching occurrence continues), `("type", prefix, starts, nchars)`,
`("num", digits, starts, nchars)` for the start offset, `("done",)` after `]`.
`finishing=True` allows only the shortest way to a closed array (used when the token budget runs out).
"""

from __future__ import annotations

from collections.abc import Sequence

State = tuple

START: State = ("start",)
DONE: State = ("done",)
_OPEN: State = ("open",)
_OBJ: State = ("obj",)
_TEXT_KEY = b'{"text":"'
_QUOTE, _COMMA, _SPACE = ord('"'), ord(","), ord(" ")


def _unusable(char: str) -> bool:
    return char in '"\\' or ord(char) < 0x20 or ord(char) == 0x7F


class SpanGrammar:
    """The automaton for one unit text and a set of types."""

    def __init__(self, text: str, types: Sequence[str]) -> None:
        self.data = text.encode("utf-8")
        self.types = [t.encode("utf-8") for t in types]
        self.usable = bytearray(len(self.data))
        self.char_at: dict[int, int] = {}  # byte offset of each character boundary -> character offset
        starts: list[int] = []
        offset = 0
        for index, char in enumerate(text):
            self.char_at[offset] = index
            width = len(char.encode("utf-8"))
            if not _unusable(char):
                self.usable[offset : offset + width] = b"\x01" * width
                if not char.isspace():
                    starts.append(offset)
            offset += width
        self.char_at[offset] = len(text)
        self.text_start: State = ("text", tuple(starts), 0)
        # bytes of the longest shortest way to `]` from any state: the rest of `{"text":"` (9), a character (4),
        # `","type":"` and `","start":` (20), a type, `,"end":` (7), two offsets, `}]` (2), plus slack
        digits = len(str(len(text)))
        self.finish_bytes = 9 + 4 + 20 + max((len(t) for t in self.types), default=0) + 7 + 2 * digits + 2 + 4

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
            if finishing or not self.text_start[1]:
                return close
            entry = _TEXT_KEY if kind == "open" else b"," + _TEXT_KEY
            return [*close, (entry[0], ("lit", entry[1:], self.text_start))]
        return []  # done: only a stop token may follow

    def _text(self, state: State, finishing: bool) -> list[tuple[int, State]]:
        positions, length = state[1], state[2]
        ends = [p for p in positions if p in self.char_at]
        if length and ends:
            first = ends[0] - length
            starts = tuple(sorted({self.char_at[p - length] for p in ends}))
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
                out[_COMMA] = ("lit", b'"end":' + str(start + nchars).encode() + b"}", _OBJ)
            elif written.startswith(digits):
                out[written[len(digits)]] = ("num", written[: len(digits) + 1], starts, nchars)
        return list(out.items())

    def advance(self, state: State, data: bytes) -> State | None:
        """The state after `data`, or None when the schema does not allow it."""
        for byte in data:
            step = dict(self.successors(state, finishing=False))
            if byte not in step:
                return None
            state = step[byte]
        return state

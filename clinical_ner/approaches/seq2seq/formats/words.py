"""`words`: the unit's text copied character for character, each word followed by `|` and its label.

Words are runs of letters and digits or single other non-space characters (`dosis,` is two words). Labels:
`O` (outside a mention), `B-TYPE` (a mention's first word), `I` (a following word of the same mention; its type
is the `B-` word's, so it is not written again). `|` is one token in byte-level and SentencePiece vocabularies
(cheap) and does not occur in PharmaCoNER's text, so it cannot be taken for copied text there; it cannot be
misread anywhere, because after each word its label is the only continuation the automaton allows. Every word
is labelled, negatives included (GNER). A mention whose edge falls inside a word (14 of PharmaCoNER's 7,624)
cannot be written: its word is labelled whole.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence

from clinical_ner.approaches.seq2seq.formats.base import WORD, CopyFormat, char_offsets
from clinical_ner.approaches.seq2seq.grammar import DONE, START, State
from clinical_ner.approaches.seq2seq.units import TextUnit, unit_spans
from clinical_ner.data.types import Span
from clinical_ner.errors import UserError

MARK, OUTSIDE, INSIDE, BEGIN = "|", "O", "I", "B-"
_MARK = ord(MARK)
_INSIDE, _OUTSIDE = INSIDE.encode(), OUTSIDE.encode()


def labels_for(types: Sequence[str]) -> list[str]:
    """Every label a word can get."""
    return [OUTSIDE, INSIDE, *(BEGIN + t for t in types)]


class WordsGrammar:
    """Copy up to the end of the next word, then `|` and a label; after the last word, copy the rest.

    States: `("g", pos, word, mention)` copying (pos: byte offset, word: index of the word being copied, the
    number of words for the tail), `("l", prefix, word, mention)` inside a label; `mention` is None or the open
    mention's (type, start byte, end byte). Labels must be prefix-free (types `DOS` and `DOSIS` are refused),
    so a label ends at its last byte."""

    def __init__(self, text: str, types: Sequence[str]) -> None:
        self.data = text.encode("utf-8")
        byte_at = {char: byte for byte, char in char_offsets(self.data).items()}
        words = [(byte_at[m.start()], byte_at[m.end()]) for m in WORD.finditer(text)]
        self.word_starts = [s for s, _ in words]
        self.targets = [e for _, e in words] + [len(self.data)]  # where each copy stretch ends
        self.labels = [label.encode("utf-8") for label in labels_for(types)]
        if any(a != b and b.startswith(a) for a in self.labels for b in self.labels):
            raise ValueError(
                f"approach.format=words needs labels none of which begins another: {labels_for(types)}"
            )
        self.longest_label = max(map(len, self.labels))
        self.start: State = self._copy(0, 0, None)

    def reserve(self, state: State) -> int:
        """The rest of the text, `|O` for every word left, and the longest label."""
        if state == DONE:
            return 0
        if state == START:
            pos, word = 0, 0
        else:
            pos, word = state[1] if state[0] == "g" else self.targets[state[2]], state[2]
        return len(self.data) - pos + 2 * (len(self.word_starts) - word) + self.longest_label + 1

    def _copy(self, pos: int, word: int, mention: tuple | None) -> State:
        return DONE if word == len(self.word_starts) and pos == len(self.data) else ("g", pos, word, mention)

    def entity_sign(self, state: State, after: State) -> int:
        """+1 for a token that writes the `B` of a label (what `entity_bias` encourages), else 0."""
        begun = self._begun(after)
        return 1 if begun is not None and begun != self._begun(state) else 0

    def _begun(self, state: State) -> int | None:
        """The word whose `B-` label is written or being written in `state` (None elsewhere)."""
        if state in (START, DONE):
            return None
        kind, word, mention = state[0], state[2], state[3]
        if kind == "l":
            return word if state[1][:1] == BEGIN[:1].encode() else None
        # copying word `word`: the previous word's label was `B-` when its mention starts at that word
        labelled = word - 1
        return labelled if labelled >= 0 and mention and mention[1] == self.word_starts[labelled] else None

    def successors(self, state: State, finishing: bool) -> list[tuple[int, State]]:
        """(next byte, state after it) for every byte the format allows in `state`."""
        if state == START:  # one leading space allowed first: SentencePiece writes its dummy prefix
            lead = [] if finishing or self.data[:1] == b" " else [(ord(" "), self.start)]
            return [*self.successors(self.start, finishing), *lead]
        if state[0] == "g":
            pos, word, mention = state[1:]
            if pos < self.targets[word]:
                return [(self.data[pos], self._copy(pos + 1, word, mention))]
            return [(_MARK, ("l", b"", word, mention))] if word < len(self.word_starts) else []
        if state[0] == "l":
            return self._label(state, finishing)
        return []  # done: only a stop token may follow

    def guess(self, state: State) -> tuple[int, State] | None:
        """The likeliest next byte and its state, for drafts: copy the text, and label every word `O`; None
        inside a label already begun."""
        if state == START:
            state = self.start
        if state == DONE or (state[0] == "l" and state[1]):
            return None
        options = self.successors(state, finishing=False)
        if state[0] == "l":
            return next(((b, s) for b, s in options if b == _OUTSIDE[0]), None)
        return options[0] if options else None

    def _label(self, state: State, finishing: bool) -> list[tuple[int, State]]:
        prefix, word, mention = state[1:]
        out: dict[int, State] = {}
        for label in self.labels:
            if not label.startswith(prefix) or (label == _INSIDE and mention is None):
                continue  # `I` continues an open mention only
            if finishing and len(label) > 1 and not prefix:
                continue  # the budget is nearly out: the one-byte labels only
            following = label[: len(prefix) + 1]  # labels are prefix-free: a complete one ends here
            if following == label:
                out[label[-1]] = self._copy(
                    self.targets[word], word + 1, self.mention_after(label, word, mention)
                )
            else:
                out[following[-1]] = ("l", following, word, mention)
        return list(out.items())

    def mention_after(self, label: bytes, word: int, mention: tuple | None) -> tuple | None:
        """The open mention once `word` got `label`: (type, start byte, end byte) or None."""
        if label == _INSIDE:
            return (mention[0], mention[1], self.targets[word])
        if label == _OUTSIDE:
            return None
        return (label[len(BEGIN) :].decode("utf-8"), self.word_starts[word], self.targets[word])


class WordsFormat(CopyFormat):
    """Every word of the copied text followed by `|` and its BIO label."""

    name = "words"
    instruction = (
        "Contesta copiando el texto carácter a carácter y escribe detrás de cada palabra | y su etiqueta: "
        "B-TIPO en la primera palabra de una mención (con uno de los tipos anteriores), I en las siguientes "
        "palabras de la misma mención y O en las demás."
    )

    def target(self, unit: TextUnit, spans: Iterable[Span]) -> str:
        mentions = unit_spans(unit, spans)
        parts, position, current = [], 0, None
        for match in WORD.finditer(unit.text):
            inside = [m for m in mentions if m.start < match.end() and match.start() < m.end]
            if not inside:
                label, current = OUTSIDE, None
            elif inside[0] is current:
                label = INSIDE
            else:
                label, current = BEGIN + inside[0].type, inside[0]
            parts += [unit.text[position : match.end()], MARK, label]
            position = match.end()
        return "".join([*parts, unit.text[position:]])

    def check_types(self, types: Sequence[str]) -> None:
        labels = labels_for(types)
        if any(a != b and b.startswith(a) for a in labels for b in labels):
            raise UserError(f"approach.format=words needs labels none of which begins another; got {labels}")

    def grammar(self, text: str, types: Sequence[str], whole_words: bool, earliest: bool) -> WordsGrammar:
        return WordsGrammar(text, types)

    def budget(self, max_new_tokens: int, text_tokens: int) -> int:
        # free decoding: the copy, and about two tokens of label (`|O`) per word (a word is at least a token)
        return max_new_tokens + 3 * text_tokens

    def spans_of(
        self, grammar: WordsGrammar, before: State, byte: int, after: State, chars: dict[int, int]
    ) -> list[Span]:
        if (
            before[0] == "g" and after == DONE
        ):  # the tail copied: a mention still open ends with the last word
            ended = [before[3]]
        elif before[0] == "l" and (after == DONE or after[0] == "g"):  # a label completed
            label, word, mention = before[1] + bytes([byte]), before[2], before[3]
            ended = [] if label == _INSIDE else [mention]  # `O` and `B-` end the open mention
            if after == DONE:  # the last word: what it opened or continued ends with the text
                ended.append(grammar.mention_after(label, word, mention))
        else:
            return []
        return [Span(chars[m[1]], chars[m[2]], m[0]) for m in ended if m is not None]

    def read(self, raw: str, types: Sequence[str]) -> tuple[str, list[Span], bool]:
        pattern = re.compile(
            re.escape(MARK)
            + "("
            + "|".join(re.escape(x) for x in sorted(labels_for(types), key=len)[::-1])
            + ")"
        )
        copy, marks, last = [], [], 0
        length = 0
        for match in pattern.finditer(raw):
            piece = raw[last : match.start()]
            copy.append(piece)
            length += len(piece)
            marks.append((length, match.group(1)))
            last = match.end()
        copy.append(raw[last:])
        text = "".join(copy)
        words = {m.end(): m.start() for m in WORD.finditer(text)}
        spans, current, well_formed = [], None, MARK not in text and len(marks) == len(words)
        for end, label in marks:
            start = words.get(end)
            if start is None:
                well_formed = False
                continue
            if label == INSIDE and current is not None:
                current = (current[0], current[1], end)
                continue
            if current is not None:
                spans.append(Span(current[1], current[2], current[0]))
            well_formed &= label != INSIDE
            current = (label[len(BEGIN) :], start, end) if label.startswith(BEGIN) else None
        if current is not None:
            spans.append(Span(current[1], current[2], current[0]))
        return text, spans, well_formed

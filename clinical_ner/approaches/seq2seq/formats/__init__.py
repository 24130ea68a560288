"""Answer formats of seq2seq NER, one module each behind `base.AnswerFormat`: `json` (the paper's list of
entities), `inline` (the text with typed markers), `words` (every word with its label)."""

from __future__ import annotations

from clinical_ner.approaches.seq2seq.formats.base import AnswerFormat
from clinical_ner.approaches.seq2seq.formats.inline import InlineFormat
from clinical_ner.approaches.seq2seq.formats.json import JsonFormat
from clinical_ner.approaches.seq2seq.formats.words import WordsFormat

FORMATS: dict[str, AnswerFormat] = {f.name: f for f in (JsonFormat(), InlineFormat(), WordsFormat())}


def answer_format(name: str) -> AnswerFormat:
    """The format called `name` (`approach.format`, validated at compose time)."""
    return FORMATS[str(name)]

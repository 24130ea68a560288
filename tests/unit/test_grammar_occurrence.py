"""Constrained decoding with untrained offsets: a repeated text is its earliest occurrence after the previous
entity, never one the untrained start digits happen to choose."""

from __future__ import annotations

import pytest

from clinical_ner.approaches.seq2seq.grammar import DONE, START, SpanGrammar
from clinical_ner.approaches.seq2seq.stage import trains_offsets
from clinical_ner.config import compose_config

TEXT = "dolor y fiebre; dolor"  # `dolor` at 0 and at 16


def entity(text: str, start: int, first: bool = True) -> bytes:
    head = b"[" if first else b","
    body = f'{{"text":"{text}","type":"SINTOMA","start":{start},"end":{start + len(text)}}}'
    return head + body.encode()


@pytest.mark.parametrize("whole_words", [False, True])
def test_earliest_occurrence_is_forced(whole_words):
    free = SpanGrammar(TEXT, ["SINTOMA"], whole_words)
    earliest = SpanGrammar(TEXT, ["SINTOMA"], whole_words, earliest=True)
    late = entity("dolor", 16)
    assert free.advance(START, late) is not None  # the digits choose among both occurrences
    assert earliest.advance(START, late) is None  # ... unless the earliest is forced
    first = earliest.advance(START, entity("dolor", 0))
    assert first is not None
    # after the first entity, the earliest occurrence after its end is the second one
    assert earliest.advance(first, entity("dolor", 16, first=False) + b"]") == DONE
    # the digits that would pick the late occurrence are not even offered
    prefix = b'[{"text":"dolor","type":"SINTOMA","start":'
    state = earliest.advance(START, prefix)
    assert [byte for byte, _ in earliest.successors(state, finishing=False)] == [ord("0")]


@pytest.mark.parametrize(
    ("overrides", "trained"),
    [
        (["approach.decoding=constrained"], False),
        (["approach.decoding=free"], True),
        (["approach.decoding=constrained", "approach.offset_loss=true"], True),
    ],
)
def test_offsets_untrained_means_earliest(overrides, trained):
    assert trains_offsets(compose_config(["approach=seq2seq", *overrides]).approach) is trained

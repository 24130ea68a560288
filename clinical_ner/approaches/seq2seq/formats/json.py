"""`json` (the default, the paper's): a compact JSON array of `{"text", "type", "start", "end"}` in text order.
Its target builder, parser, automaton and metrics are the original modules (units, parsing, grammar, metrics)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from clinical_ner.approaches.seq2seq.formats.base import AnswerFormat
from clinical_ner.approaches.seq2seq.grammar import SpanGrammar
from clinical_ner.approaches.seq2seq.metrics import Sample, generative_metrics
from clinical_ner.approaches.seq2seq.parsing import parse_spans
from clinical_ner.approaches.seq2seq.units import TextUnit, offset_values, target_entities, to_json
from clinical_ner.data.types import Span


class JsonFormat(AnswerFormat):
    """A JSON list of entities with offsets (parsed leniently, re-anchored on the text)."""

    name = "json"
    instruction = (
        "Contesta únicamente con una lista JSON, sin explicaciones. Cada elemento es un objeto con cuatro claves: "
        '"text" (la mención tal y como está escrita en el texto, copiada carácter a carácter), "type" (uno de los '
        'tipos anteriores), "start" y "end" (posiciones de carácter de la mención dentro del texto, contando '
        'desde 0; "end" señala el carácter que sigue a la mención). Ordena los objetos según su aparición en el '
        "texto. Si el texto no contiene ninguna mención, contesta []."
    )
    guaranteed = ("json_parse_rate", "hallucination_rate", "hallucination_rate_micro")
    logged = ("json_parse_rate",)

    def target(self, unit: TextUnit, spans: Iterable[Span]) -> str:
        return to_json(target_entities(unit, spans))

    def unlearned(self, answer: str, offset_loss: bool) -> list[tuple[int, int]]:
        return [] if offset_loss else offset_values(answer)

    def parse(self, raw: str, text: str, types: Sequence[str]) -> list[Span]:
        return parse_spans(raw, text, types)

    def grammar(self, text: str, types: Sequence[str], whole_words: bool, earliest: bool) -> SpanGrammar:
        return SpanGrammar(text, types, whole_words, earliest)

    def metrics(self, samples: Sequence[Sample], types: Sequence[str]) -> dict[str, float | int]:
        return generative_metrics(samples, types)

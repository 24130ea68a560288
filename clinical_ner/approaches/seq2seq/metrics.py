"""The paper's generative metrics of JSON answers (`approach.format=json`; the copy formats' metrics are in
formats/base.py), with the original code's definitions kept for comparability and corrected
variants beside the defective ones (see docs in ../shared/docs/seed-generative-metrics.md).

A *sample* is one prompt and its answer: a document when `approach.unit=document` (the paper's setting, where
these are per-document as in the original), a sentence when `unit=sentence`. *Raw entities* are the dicts of the
answer's list exactly as written (no type fixing, no re-anchoring); gold entities are the unit's mentions as
`{"text", "type", "start", "end"}` in unit offsets. All rates are in [0, 1] and 0.0 when undefined.

- `json_parse_rate` (original): share of samples whose answer, sliced from the first `[` to the last `]`, is JSON
  of a list.
- `hallucination_rate` (original): per sample, the share of raw entities whose stripped `text` is not a substring of
  the unit (0 when it has no entity, unparsable answers included), macro-averaged over all samples. Samples without
  entities pull it towards 0, so `hallucination_rate_micro` (corrected) pools every raw entity of every sample.
- `boundary_accuracy` (original): per sample, among raw entities whose `(text, type)` equals some gold `(text, type)`
  (the lookup keeps the last gold occurrence), the share whose `(start, end)` equals that gold span; 0.0 when the
  sample has no prediction, no gold or no match; macro-averaged over all samples. The 0.0s for undefined samples are
  a defect, corrected in `boundary_accuracy_matched` (macro over samples with at least one matched entity, so with
  both predictions and gold) and `boundary_accuracy_micro` (exact boundaries over all matched entities pooled).
- `format_compliance` (original): among parsable samples, the share whose list is non-empty and whose every element
  is a dict with keys text, type, start and end, `type.upper()` a corpus type, and int start and end. An empty list
  (the right answer for a unit without mentions) counts as non-compliant: `format_compliance_corrected` counts it
  compliant, with the same rule otherwise.

Precision, recall and F1 are not here: predictions go through the official span scorer (metrics/span_scorer.py),
exactly as token classification's do.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from clinical_ner.approaches.seq2seq.parsing import original_array

KEYS = ("text", "type", "start", "end")


@dataclass
class Sample:
    """One prompt's raw answer, the unit text it was asked about, and the unit's gold entities."""

    raw: str
    text: str
    gold: list[dict] = field(default_factory=list)


def _mean(values: Sequence[float]) -> float:
    return sum(values) / len(values) if values else 0.0


def raw_entities(raw: str) -> list[dict] | None:
    """The dicts of the answer's list under the original parse rule; None when it does not parse."""
    array = original_array(raw)
    return None if array is None else [item for item in array if isinstance(item, dict)]


def _hallucinated(entity: dict, text: str) -> bool:
    return str(entity.get("text", "")).strip() not in text


def _is_compliant(array: list, types: set[str], allow_empty: bool) -> bool:
    if not array:
        return allow_empty
    for item in array:
        if not isinstance(item, dict) or not all(key in item for key in KEYS):
            return False
        if not isinstance(item["type"], str) or item["type"].upper() not in types:
            return False
        if not isinstance(item["start"], int) or not isinstance(item["end"], int):
            return False
    return True


def _boundary_counts(predicted: list[dict], gold: list[dict]) -> tuple[int, int]:
    """(matched, exact): raw entities whose (text, type) is a gold one, and those with the gold offsets too."""
    lookup = {(g["text"], g["type"]): (g["start"], g["end"]) for g in gold}  # the last occurrence wins
    matched = exact = 0
    for entity in predicted:
        key = (entity.get("text"), entity.get("type"))
        if isinstance(key[0], str) and isinstance(key[1], str) and key in lookup:
            matched += 1
            exact += (entity.get("start"), entity.get("end")) == lookup[key]
    return matched, exact


def generative_metrics(samples: Sequence[Sample], types: Sequence[str]) -> dict[str, float | int]:
    """Every metric of the module docstring over `samples`."""
    type_set = {t.upper() for t in types}
    parsed = [original_array(s.raw) for s in samples]
    entities = [raw_entities(s.raw) or [] for s in samples]
    hallucination_per_sample, hallucinated, total_entities = [], 0, 0
    boundary_per_sample, boundary_matched_only, matched_total, exact_total = [], [], 0, 0
    for sample, predicted in zip(samples, entities, strict=True):
        flags = [_hallucinated(e, sample.text) for e in predicted]
        hallucination_per_sample.append(_mean(flags))
        hallucinated += sum(flags)
        total_entities += len(flags)
        matched, exact = _boundary_counts(predicted, sample.gold)
        boundary_per_sample.append(exact / matched if predicted and sample.gold and matched else 0.0)
        if matched:
            boundary_matched_only.append(exact / matched)
        matched_total += matched
        exact_total += exact
    arrays = [array for array in parsed if array is not None]
    return {
        "samples": len(samples),
        "json_parse_rate": _mean([array is not None for array in parsed]),
        "hallucination_rate": _mean(hallucination_per_sample),
        "hallucination_rate_micro": hallucinated / total_entities if total_entities else 0.0,
        "boundary_accuracy": _mean(boundary_per_sample),
        "boundary_accuracy_matched": _mean(boundary_matched_only),
        "boundary_accuracy_micro": exact_total / matched_total if matched_total else 0.0,
        "format_compliance": _mean([_is_compliant(a, type_set, allow_empty=False) for a in arrays]),
        "format_compliance_corrected": _mean([_is_compliant(a, type_set, allow_empty=True) for a in arrays]),
    }

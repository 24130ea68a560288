"""Every scored mention of a run in one error category, consistent with the scorer's counts.

The scorer (clinical_ner/metrics/span_scorer.py) counts a true positive for each (type, start, end) triple on both
sides, a false positive for each predicted triple not in gold and a false negative for each gold triple not
predicted, after its rule (codalab: UNCLEAR dropped on both sides). Here each of those triples gets one category,
so per document and in total:

- exact                       = TP
- wrong_type + boundary + overlap_wrong_type + spurious (predicted side) = FP
- wrong_type + boundary + overlap_wrong_type + missed   (gold side)      = FN

A false positive is `wrong_type` when a scored gold mention has its exact offsets (with another type), else
`boundary` when it overlaps a gold mention of its type, else `overlap_wrong_type` when it overlaps any gold mention,
else `spurious`; a false negative is classified the same way against the predictions (`missed` when nothing
overlaps). Mentions the rule drops are kept as `ignored`, outside every count.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from clinical_ner.errors import UserError
from clinical_ner.metrics.span_scorer import RULES, Triple, apply_rule

EXACT, WRONG_TYPE, BOUNDARY, OVERLAP_WRONG_TYPE = "exact", "wrong_type", "boundary", "overlap_wrong_type"
SPURIOUS, MISSED, IGNORED = "spurious", "missed", "ignored"
CATEGORIES = (EXACT, WRONG_TYPE, BOUNDARY, OVERLAP_WRONG_TYPE, SPURIOUS, MISSED)
LABELS = {
    EXACT: "exact match",
    WRONG_TYPE: "wrong type",
    BOUNDARY: "boundary",
    OVERLAP_WRONG_TYPE: "overlap + wrong type",
    SPURIOUS: "spurious",
    MISSED: "missed",
    IGNORED: "not scored (rule)",
}
# Sides of a mention: in both gold and predictions (a TP), predictions only (FP), gold only (FN); a mention the rule
# drops keeps its side (predicted or gold) with the category `ignored`.
BOTH, PREDICTED, GOLD = "tp", "fp", "fn"


@dataclass(frozen=True)
class Outcome:
    """One mention of a document: its triple, side, category and the mention of the other side it was judged
    against (`partner`, None for exact, spurious, missed and ignored mentions)."""

    type: str
    start: int
    end: int
    side: str
    category: str
    partner: Triple | None = None


def _overlaps(a: Triple, b: Triple) -> bool:
    return a[1] < b[2] and b[1] < a[2]


def _overlap_size(a: Triple, b: Triple) -> int:
    return min(a[2], b[2]) - max(a[1], b[1])


def _judge(mention: Triple, others: set[Triple], unmatched: str) -> tuple[str, Triple | None]:
    """The category of an unmatched mention against the other side's scored mentions, and its partner."""
    same_span = sorted(o for o in others if o[1:] == mention[1:] and o[0] != mention[0])
    if same_span:
        return WRONG_TYPE, same_span[0]
    overlapping = [o for o in others if _overlaps(mention, o)]
    if not overlapping:
        return unmatched, None
    # the largest overlap is the partner shown; ties go to the earliest mention, so the page is deterministic
    best = sorted(overlapping, key=lambda o: (-_overlap_size(mention, o), o[1], o[2], o[0]))
    right_type = [o for o in best if o[0] == mention[0]]
    if right_type:
        return BOUNDARY, right_type[0]
    return OVERLAP_WRONG_TYPE, best[0]


def classify_document(
    gold: Iterable[Triple], system: Iterable[Triple], rule: str = "codalab"
) -> list[Outcome]:
    """Every mention of one document (exact matches once), sorted by offsets; see the module docstring."""
    if rule not in RULES:
        raise UserError(f"unknown scoring rule {rule!r}; expected one of {', '.join(RULES)}")
    gold, system = set(gold), set(system)
    scored_gold, scored_system = apply_rule(gold, rule), apply_rule(system, rule)
    outcomes = [Outcome(*t, BOTH, EXACT) for t in scored_gold & scored_system]
    for triple in scored_system - scored_gold:
        outcomes.append(Outcome(*triple, PREDICTED, *_judge(triple, scored_gold, SPURIOUS)))
    for triple in scored_gold - scored_system:
        outcomes.append(Outcome(*triple, GOLD, *_judge(triple, scored_system, MISSED)))
    outcomes += [Outcome(*t, GOLD, IGNORED) for t in gold - scored_gold]
    outcomes += [Outcome(*t, PREDICTED, IGNORED) for t in system - scored_system]
    return sorted(outcomes, key=lambda o: (o.start, -o.end, o.type, o.side))


def classify(
    gold: Mapping[str, set[Triple]], system: Mapping[str, set[Triple]], rule: str = "codalab"
) -> dict[str, list[Outcome]]:
    """`classify_document` for every document the scorer scores (ids on both sides), keyed by id."""
    return {
        doc_id: classify_document(gold[doc_id], system[doc_id], rule)
        for doc_id in sorted(set(gold) & set(system))
    }


def category_counts(outcomes: Mapping[str, list[Outcome]]) -> dict[str, dict[str, int]]:
    """{category: {side: count}} over all documents (ignored mentions left out): `exact` has side `tp`, the
    error categories `fp` (predicted mentions) and `fn` (gold mentions)."""
    counts: Counter[tuple[str, str]] = Counter(
        (o.category, o.side) for doc in outcomes.values() for o in doc if o.category != IGNORED
    )
    table: dict[str, dict[str, int]] = {category: {} for category in CATEGORIES}
    for (category, side), count in sorted(counts.items()):
        table[category][side] = count
    return table


def totals(counts: Mapping[str, Mapping[str, int]]) -> dict[str, int]:
    """TP, FP and FN as the sums of the category counts (what must equal the scorer's)."""
    return {side: sum(c.get(side, 0) for c in counts.values()) for side in (BOTH, PREDICTED, GOLD)}


def flat_counts(counts: Mapping[str, Mapping[str, int]], prefix: str) -> dict[str, int]:
    """`{prefix}/{category}/{side}` -> count: the numbers a logger may receive (no text, no offsets)."""
    return {f"{prefix}/{cat}/{side}": n for cat, sides in counts.items() for side, n in sides.items()}

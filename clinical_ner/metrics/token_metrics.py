"""Secondary token-level metric: entity F1 over IOB2 tag sequences (seqeval, strict mode)."""

from __future__ import annotations

from seqeval.metrics import f1_score
from seqeval.scheme import IOB2


def seqeval_f1(true_tags: list[list[str]], pred_tags: list[list[str]]) -> float:
    """Strict IOB2 entity-level micro F1 of predicted vs. true tag sequences (one list per sentence)."""
    if len(true_tags) != len(pred_tags):
        raise ValueError(f"{len(true_tags)} true sequences but {len(pred_tags)} predicted sequences")
    return float(f1_score(true_tags, pred_tags, mode="strict", scheme=IOB2))

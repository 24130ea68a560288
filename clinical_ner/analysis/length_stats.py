"""Summaries of token-length distributions and the maximum lengths they suggest."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

PERCENTILES = (50, 90, 95, 99)
MULTIPLE = 64  # lengths rounded up to a multiple of 64: tensor-core friendly, and stable across small changes


@dataclass(frozen=True)
class LengthStats:
    """Count, mean, nearest-rank percentiles (real lengths, never interpolated) and maximum."""

    n: int
    mean: float
    p50: int
    p90: int
    p95: int
    p99: int
    max: int

    def percentile(self, q: int) -> int:
        """The stored percentile `q` (50, 90, 95 or 99)."""
        return int(getattr(self, f"p{q}"))


def length_stats(lengths: Sequence[int]) -> LengthStats:
    """Summary of `lengths` (all zeros for an empty list)."""
    if not lengths:
        return LengthStats(0, 0.0, 0, 0, 0, 0, 0)
    values = np.asarray(lengths, dtype=np.int64)
    # inverted_cdf: the smallest observed length covering q% of the items (a length that really occurs)
    p50, p90, p95, p99 = (int(v) for v in np.percentile(values, PERCENTILES, method="inverted_cdf"))
    return LengthStats(len(values), float(values.mean()), p50, p90, p95, p99, int(values.max()))


def round_up(value: int, multiple: int = MULTIPLE) -> int:
    """`value` rounded up to a multiple of `multiple` (at least one multiple)."""
    return max(multiple, math.ceil(value / multiple) * multiple)


def coverage(lengths: Sequence[int], limit: int) -> float:
    """Share of `lengths` that fit in `limit` tokens (1.0 for an empty list)."""
    if not lengths:
        return 1.0
    return sum(1 for length in lengths if length <= limit) / len(lengths)

"""Bootstrap intervals over test documents for micro P/R/F1, for one cell and for a paired difference.

A resample draws the cell's test documents with replacement (multinomial weights, so each draw is one vector of
document multiplicities). With several seeds the SAME resample is applied to every seed's per-document counts,
micro P/R/F1 are recomputed per seed and averaged over seeds: the statistic is exactly what the table reports
(the seed mean), and the interval measures how much it depends on which documents happen to be in the test set.
Seed-to-seed spread is reported separately (the standard deviation). A document absent from a seed's counts
(not scored in that run) contributes zero counts to it, so the full sample reproduces the reported totals.
The paired difference resamples once and applies the same weights to both approaches' counts, so documents
that are hard for both cancel out, and two identical systems differ by exactly zero in every resample.
Intervals are percentile intervals; the generator is seeded per cell, so output is reproducible and does not
depend on which other cells are in the report.
"""

from __future__ import annotations

import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

Counts = Mapping[str, Sequence[int]]  # {doc id: (tp, fp, fn)}


@dataclass(frozen=True)
class Interval:
    """A percentile interval (fractions, like the metrics) and the number of documents resampled."""

    low: float
    high: float
    documents: int


def cell_rng(seed: int, label: str) -> np.random.Generator:
    """A generator seeded by the report seed and the cell, independent of the other cells."""
    return np.random.default_rng([seed, zlib.crc32(label.encode("utf-8"))])


def doc_ids(per_documents: Sequence[Counts]) -> list[str]:
    """Sorted union of the documents scored in any of the runs."""
    return sorted({doc for counts in per_documents for doc in counts})


def count_matrix(per_documents: Sequence[Counts], docs: Sequence[str]) -> np.ndarray:
    """(seeds, documents, 3) integer counts; zeros where a run did not score a document."""
    matrix = np.zeros((len(per_documents), len(docs), 3), dtype=np.int64)
    index = {doc: i for i, doc in enumerate(docs)}
    for s, counts in enumerate(per_documents):
        for doc, triple in counts.items():
            matrix[s, index[doc]] = triple
    return matrix


def resample_weights(n_docs: int, n_resamples: int, rng: np.random.Generator) -> np.ndarray:
    """(resamples, documents) multiplicities of a draw of `n_docs` documents with replacement."""
    return rng.multinomial(n_docs, np.full(n_docs, 1.0 / n_docs), size=n_resamples)


def micro_prf(totals: np.ndarray) -> dict[str, np.ndarray]:
    """Micro P/R/F1 of (..., 3) tp/fp/fn totals, 0 where undefined (as the official scorer does)."""
    tp, fp, fn = (totals[..., i].astype(np.float64) for i in range(3))
    with np.errstate(divide="ignore", invalid="ignore"):
        precision = np.where(tp + fp > 0, tp / (tp + fp), 0.0)
        recall = np.where(tp + fn > 0, tp / (tp + fn), 0.0)
        f1 = np.where(precision + recall > 0, 2 * precision * recall / (precision + recall), 0.0)
    return {"precision": precision, "recall": recall, "f1": f1}


def resampled_scores(matrix: np.ndarray, weights: np.ndarray) -> dict[str, np.ndarray]:
    """Per resample, the seed mean of micro P/R/F1: (resamples,) arrays."""
    totals = np.einsum("bd,sdk->sbk", weights, matrix)  # integer counts: exact
    return {name: values.mean(axis=0) for name, values in micro_prf(totals).items()}


def percentile_interval(samples: np.ndarray, documents: int, level: float = 0.95) -> Interval:
    """The central `level` percentile interval of bootstrap samples."""
    tail = 100 * (1 - level) / 2
    low, high = np.percentile(samples, [tail, 100 - tail])
    return Interval(float(low), float(high), documents)


def bootstrap_prf(
    per_documents: Sequence[Counts], n_resamples: int, rng: np.random.Generator, level: float = 0.95
) -> dict[str, Interval] | None:
    """Intervals for the seed-mean P/R/F1 of one cell (None without documents or resamples)."""
    docs = doc_ids(per_documents)
    if not docs or n_resamples <= 0:
        return None
    weights = resample_weights(len(docs), n_resamples, rng)
    scores = resampled_scores(count_matrix(per_documents, docs), weights)
    return {name: percentile_interval(values, len(docs), level) for name, values in scores.items()}


def paired_difference(
    first: Sequence[Counts],
    second: Sequence[Counts],
    n_resamples: int,
    rng: np.random.Generator,
    name: str = "f1",
    level: float = 0.95,
) -> Interval | None:
    """Interval for (seed-mean `name` of `first`) - (that of `second`) with the same resampled documents."""
    docs = doc_ids([*first, *second])
    if not docs or n_resamples <= 0:
        return None
    weights = resample_weights(len(docs), n_resamples, rng)
    a = resampled_scores(count_matrix(first, docs), weights)[name]
    b = resampled_scores(count_matrix(second, docs), weights)[name]
    return percentile_interval(a - b, len(docs), level)

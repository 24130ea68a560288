"""Independent re-implementation of the official PharmaCoNER subtask-1 (NER) scorer.

Rules (see docs/pharmaconer-scoring.md): lenient .ann parsing into (type, start, end) sets per document, strict
exact match, only documents present on both sides scored, micro-averaged P/R/F1. Rule "codalab" (leaderboard)
drops UNCLEAR from gold and system; rule "standalone" (GitHub script) scores every type.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from clinical_ner.data.types import Document, Span
from clinical_ner.errors import UserError

logger = logging.getLogger(__name__)

RULES = ("codalab", "standalone")
UNCLEAR = "UNCLEAR"

Triple = tuple[str, int, int]


def _ratio(numerator: int, denominator: int) -> float:
    return numerator / denominator if denominator else 0.0


def _prf(tp: int, fp: int, fn: int) -> tuple[float, float, float]:
    """Precision, recall and F1 exactly as the official script computes them (F1 = 2PR / (P + R))."""
    precision = _ratio(tp, tp + fp)
    recall = _ratio(tp, tp + fn)
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return precision, recall, f1


@dataclass
class Scores:
    """Micro-averaged span scores plus per-type counts and the gold docs that had no prediction."""

    precision: float
    recall: float
    f1: float
    tp: int
    fp: int
    fn: int
    documents: int
    rule: str = "codalab"
    per_type: dict[str, dict[str, float | int]] = field(default_factory=dict)
    missing_predictions: list[str] = field(default_factory=list)
    # {doc id: [tp, fp, fn]}: what bootstrap intervals over documents resample (ids only, never text)
    per_document: dict[str, list[int]] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready dict."""
        return asdict(self)


def parse_official_ann(path: Path) -> set[Triple]:
    """Parse a .ann file the way the official scorer does: T lines only, `(type, start, end)` from field 2.

    Lines are stripped (CRLF is fine); a line missing the type/start/end tokens is skipped with a warning; a
    non-integer offset (e.g. a discontinuous `1 5;7 9`) raises UserError naming file:line.
    """
    path = Path(path)
    try:
        # The official script never reads the surface text, so undecodable bytes there must not matter;
        # universal newlines (the default) turn CRLF/CR into LF like the official line iteration does.
        content = path.read_text(encoding="utf-8", errors="replace")
    except OSError as err:
        raise UserError(f"{path}: cannot read file ({err.strerror})") from None
    triples: set[Triple] = set()
    for lineno, raw_line in enumerate(content.split("\n"), start=1):
        line = raw_line.strip()
        if not line.startswith("T"):
            continue
        fields = line.split("\t")
        tokens = fields[1].split() if len(fields) > 1 else []
        if len(tokens) < 3:
            logger.warning(
                "%s:%d: T line without 'TYPE START END'; skipped (as the official scorer does)", path, lineno
            )
            continue
        try:
            start, end = int(tokens[1]), int(tokens[2])
        except ValueError:
            raise UserError(f"{path}:{lineno}: offset is not an integer (discontinuous span?)") from None
        triples.add((tokens[0], start, end))
    return triples


def read_ann_dir(folder: Path, role: str = "gold") -> dict[str, set[Triple]]:
    """All `*.ann` in `folder` parsed with `parse_official_ann`, keyed by file stem; `role` names it in errors."""
    folder = Path(folder)
    if not folder.is_dir():
        raise UserError(f"{folder}: {role} folder not found")
    return {path.stem: parse_official_ann(path) for path in sorted(folder.glob("*.ann"))}


def _check_rule(rule: str) -> None:
    if rule not in RULES:
        raise UserError(f"unknown scoring rule {rule!r}; expected one of {', '.join(RULES)}")


def apply_rule(triples: Iterable[Triple], rule: str) -> set[Triple]:
    """The CodaLab scorer drops UNCLEAR on both sides; the standalone one keeps everything."""
    if rule == "codalab":
        return {triple for triple in triples if triple[0] != UNCLEAR}
    return set(triples)


def _scored_ids(gold: Mapping[str, Any], system: Mapping[str, Any]) -> list[str]:
    return sorted(set(gold) & set(system))


def score_sets(
    gold: Mapping[str, set[Triple]], system: Mapping[str, set[Triple]], rule: str = "codalab"
) -> Scores:
    """Score per-document triple sets; only ids on both sides count (missing system docs are listed, not FN)."""
    _check_rule(rule)
    tp_by_type: Counter[str] = Counter()
    fp_by_type: Counter[str] = Counter()
    fn_by_type: Counter[str] = Counter()
    scored = _scored_ids(gold, system)
    per_document: dict[str, list[int]] = {}
    for doc_id in scored:
        gold_set = apply_rule(gold[doc_id], rule)
        system_set = apply_rule(system[doc_id], rule)
        hits = gold_set & system_set
        per_document[doc_id] = [len(hits), len(system_set) - len(hits), len(gold_set) - len(hits)]
        tp_by_type.update(label for label, _, _ in gold_set & system_set)
        fp_by_type.update(label for label, _, _ in system_set - gold_set)
        fn_by_type.update(label for label, _, _ in gold_set - system_set)
    per_type: dict[str, dict[str, float | int]] = {}
    for label in sorted(set(tp_by_type) | set(fp_by_type) | set(fn_by_type)):
        tp, fp, fn = tp_by_type[label], fp_by_type[label], fn_by_type[label]
        precision, recall, f1 = _prf(tp, fp, fn)
        per_type[label] = {
            "precision": precision,
            "recall": recall,
            "f1": f1,
            "tp": tp,
            "fp": fp,
            "fn": fn,
            "support": tp + fn,
        }
    tp, fp, fn = sum(tp_by_type.values()), sum(fp_by_type.values()), sum(fn_by_type.values())
    precision, recall, f1 = _prf(tp, fp, fn)
    return Scores(
        precision=precision,
        recall=recall,
        f1=f1,
        tp=tp,
        fp=fp,
        fn=fn,
        documents=len(scored),
        rule=rule,
        per_type=per_type,
        missing_predictions=sorted(set(gold) - set(system)),
        per_document=per_document,
    )


def score_dirs(gold_dir: Path, pred_dir: Path, rule: str = "codalab") -> Scores:
    """Score a folder of predicted `.ann` files against a gold folder (file stem = document id)."""
    _check_rule(rule)
    gold = read_ann_dir(gold_dir, "gold")
    if not gold:
        raise UserError(f"{gold_dir}: no .ann files in the gold folder")
    scores = score_sets(gold, read_ann_dir(pred_dir, "prediction"), rule)
    if scores.missing_predictions:
        shown = ", ".join(scores.missing_predictions[:5])
        more = "" if len(scores.missing_predictions) <= 5 else ", ..."
        logger.warning(
            "%d of %d gold documents have no prediction file in %s; they are skipped, not counted as misses: %s%s",
            len(scores.missing_predictions),
            len(gold),
            pred_dir,
            shown,
            more,
        )
    return scores


def _spans_to_triples(spans: Iterable[Span]) -> set[Triple]:
    return {(span.type, span.start, span.end) for span in spans}


def score_documents(
    gold_docs: list[Document], pred: Mapping[str, Iterable[Span]], rule: str = "codalab"
) -> Scores:
    """In-memory scoring for training code: gold Documents vs. predicted spans by doc id (missing ids skipped)."""
    gold = {doc.id: _spans_to_triples(doc.spans) for doc in gold_docs}
    system = {doc_id: _spans_to_triples(spans) for doc_id, spans in pred.items()}
    return score_sets(gold, system, rule)


def _sorted_triples(triples: set[Triple]) -> list[list[str | int]]:
    return [[label, start, end] for label, start, end in sorted(triples, key=lambda t: (t[1], t[2], t[0]))]


def error_report(
    gold: Mapping[str, set[Triple]], system: Mapping[str, set[Triple]], rule: str = "codalab"
) -> dict[str, dict[str, list[list[str | int]]]]:
    """Per scored document with errors: its false positives and false negatives as [type, start, end] lists."""
    _check_rule(rule)
    report: dict[str, dict[str, list[list[str | int]]]] = {}
    for doc_id in _scored_ids(gold, system):
        gold_set = apply_rule(gold[doc_id], rule)
        system_set = apply_rule(system[doc_id], rule)
        false_positives, false_negatives = system_set - gold_set, gold_set - system_set
        if false_positives or false_negatives:
            report[doc_id] = {
                "false_positives": _sorted_triples(false_positives),
                "false_negatives": _sorted_triples(false_negatives),
            }
    return report

"""Span scorer: exact parity with the official CodaLab/standalone numbers, rule edge cases, perturbations, CLI."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest

from clinical_ner.data.types import Document, Span
from clinical_ner.errors import UserError
from clinical_ner.metrics.span_scorer import (
    RULES,
    error_report,
    parse_official_ann,
    read_ann_dir,
    score_dirs,
    score_documents,
    score_sets,
)
from clinical_ner.metrics.token_metrics import seqeval_f1

REPO_ROOT = Path(__file__).resolve().parents[2]


def _parity_run(pharmaconer_dir: Path) -> Path:
    """The CodaLab sample submission: shipped inside the corpus folder (or, in some layouts, beside it)."""
    for root in (pharmaconer_dir, pharmaconer_dir.parent):
        candidate = root / "parity" / "codalab_sample_run"
        if candidate.is_dir():
            return candidate
    pytest.fail(f"parity/codalab_sample_run not found in or beside {pharmaconer_dir}")


GOLD_LINES = "T1\tNORMALIZABLES 0 5\taaaaa\n#1\tAnnotatorNotes T1\t123\nT2\tPROTEINAS 10 14\tbbbb\n"


def _write(folder: Path, files: dict[str, str]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for doc_id, content in files.items():
        (folder / f"{doc_id}.ann").write_bytes(content.encode("utf-8"))
    return folder


def _score(tmp_path: Path, gold: dict[str, str], system: dict[str, str], rule: str = "codalab"):
    return score_dirs(_write(tmp_path / "gold", gold), _write(tmp_path / "sys", system), rule)


def _counts(scores) -> tuple[int, int, int]:
    return scores.tp, scores.fp, scores.fn


def _run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    command = [sys.executable, "-m", "clinical_ner.evaluate", *args]
    return subprocess.run(command, capture_output=True, text=True, cwd=REPO_ROOT, env=env, check=False)


# ---- parity with the official scorer on the real test set -------------------------------------------------


@pytest.mark.corpus
def test_parity_codalab(pharmaconer_dir: Path) -> None:
    scores = score_dirs(pharmaconer_dir / "test", _parity_run(pharmaconer_dir))
    assert scores.documents == 250
    assert _counts(scores) == (1556, 231, 286)
    assert scores.precision == 0.8707330721880246
    assert scores.recall == 0.8447339847991314
    assert scores.f1 == 0.8575365114356572
    assert scores.missing_predictions == []
    assert "UNCLEAR" not in scores.per_type


@pytest.mark.corpus
def test_parity_standalone(pharmaconer_dir: Path) -> None:
    sample = _parity_run(pharmaconer_dir)
    scores = score_dirs(pharmaconer_dir / "test", sample, rule="standalone")
    assert _counts(scores) == (1582, 233, 294)
    assert scores.precision == 0.8716253443526171
    assert scores.recall == 0.8432835820895522
    assert scores.f1 == 0.8572202655107016
    per_type = scores.per_type
    assert sum(counts["tp"] for counts in per_type.values()) == 1582
    assert sum(counts["fp"] for counts in per_type.values()) == 233
    assert sum(counts["support"] for counts in per_type.values()) == 1876


# ---- the cases listed in docs/pharmaconer-scoring.md --------------------------------------------------------


def test_perfect_and_duplicate_system_line(tmp_path: Path) -> None:
    system = GOLD_LINES + "T9\tPROTEINAS 10 14\tbbbb\n"
    scores = _score(tmp_path, {"d": GOLD_LINES}, {"d": system})
    assert _counts(scores) == (2, 0, 0)
    assert (scores.precision, scores.recall, scores.f1) == (1.0, 1.0, 1.0)


@pytest.mark.parametrize(("rule", "expected"), [("codalab", (2, 0, 0)), ("standalone", (2, 1, 0))])
def test_spurious_unclear_prediction(tmp_path: Path, rule: str, expected: tuple[int, int, int]) -> None:
    system = GOLD_LINES + "T3\tUNCLEAR 20 25\tccccc\n"
    assert _counts(_score(tmp_path, {"d": GOLD_LINES}, {"d": system}, rule)) == expected


@pytest.mark.parametrize(("rule", "expected"), [("codalab", (2, 0, 0)), ("standalone", (2, 0, 1))])
def test_missed_gold_unclear(tmp_path: Path, rule: str, expected: tuple[int, int, int]) -> None:
    gold = GOLD_LINES + "T3\tUNCLEAR 20 25\tccccc\n"
    assert _counts(_score(tmp_path, {"d": gold}, {"d": GOLD_LINES}, rule)) == expected


def test_wrong_type_on_correct_span(tmp_path: Path) -> None:
    system = "T1\tNORMALIZABLES 0 5\taaaaa\nT2\tNORMALIZABLES 10 14\tbbbb\n"
    scores = _score(tmp_path, {"d": GOLD_LINES}, {"d": system})
    assert _counts(scores) == (1, 1, 1)
    assert scores.per_type["NORMALIZABLES"] == {
        "precision": 0.5,
        "recall": 1.0,
        "f1": 2 * 0.5 * 1.0 / 1.5,
        "tp": 1,
        "fp": 1,
        "fn": 0,
        "support": 1,
    }
    assert scores.per_type["PROTEINAS"]["fn"] == 1 and scores.per_type["PROTEINAS"]["support"] == 1


@pytest.mark.parametrize("shifted", ["0 6", "1 5", "1 6"])
def test_shifted_boundary(tmp_path: Path, shifted: str) -> None:
    system = f"T1\tNORMALIZABLES {shifted}\taaaaa\nT2\tPROTEINAS 10 14\tbbbb\n"
    assert _counts(_score(tmp_path, {"d": GOLD_LINES}, {"d": system})) == (1, 1, 1)


def test_missing_system_file_skipped(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="clinical_ner.metrics.span_scorer"):
        scores = _score(tmp_path, {"d": GOLD_LINES, "e": GOLD_LINES}, {"d": GOLD_LINES})
    assert scores.documents == 1
    assert _counts(scores) == (2, 0, 0)
    assert scores.missing_predictions == ["e"]
    assert any("e" in record.getMessage() and "1 of 2" in record.getMessage() for record in caplog.records)


def test_extra_system_file_ignored(tmp_path: Path) -> None:
    scores = _score(tmp_path, {"d": GOLD_LINES}, {"d": GOLD_LINES, "background": GOLD_LINES})
    assert scores.documents == 1 and _counts(scores) == (2, 0, 0)


def test_notes_comments_blank_lines_ignored(tmp_path: Path) -> None:
    system = "\n#1\tAnnotatorNotes T1\t99\n  \nN1\tReference T1 X:1\ta\nA1\tNeg T1\nT1\tNORMALIZABLES 0 5\taaaaa\n\n"
    assert _counts(_score(tmp_path, {"d": GOLD_LINES}, {"d": system})) == (1, 0, 1)


def test_crlf_line_endings(tmp_path: Path) -> None:
    crlf = GOLD_LINES.replace("\n", "\r\n")
    assert parse_official_ann(_write(tmp_path / "x", {"d": crlf}) / "d.ann") == {
        ("NORMALIZABLES", 0, 5),
        ("PROTEINAS", 10, 14),
    }
    assert _counts(_score(tmp_path, {"d": GOLD_LINES}, {"d": crlf})) == (2, 0, 0)


def test_empty_files_both_sides(tmp_path: Path) -> None:
    scores = _score(tmp_path, {"d": "", "e": GOLD_LINES}, {"d": "", "e": GOLD_LINES})
    assert scores.documents == 2 and _counts(scores) == (2, 0, 0)
    empty = _score(tmp_path / "only", {"d": ""}, {"d": ""})
    assert empty.documents == 1 and _counts(empty) == (0, 0, 0)
    assert (empty.precision, empty.recall, empty.f1) == (0.0, 0.0, 0.0)


def test_lenient_parsing_like_official(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    # Space-separated surface (as in the CodaLab sample run), missing tokens skipped, whitespace stripped.
    content = "T1\tPROTEINAS 10 14 bbbb\nT2\tPROTEINAS 3\tx\nT3\n   T4\tNORMALIZABLES 0 5\taaaaa  \n"
    path = _write(tmp_path, {"d": content}) / "d.ann"
    with caplog.at_level(logging.WARNING):
        assert parse_official_ann(path) == {("PROTEINAS", 10, 14), ("NORMALIZABLES", 0, 5)}
    assert len(caplog.records) == 2


@pytest.mark.parametrize("bad", ["T1\tPROTEINAS 10 1x4\tb\n", "T1\tPROTEINAS 1 5;7 9\tb c\n"])
def test_non_integer_offset_is_user_error(tmp_path: Path, bad: str) -> None:
    path = _write(tmp_path, {"d": GOLD_LINES + bad}) / "d.ann"
    with pytest.raises(UserError, match=r"d\.ann:4: offset is not an integer"):
        parse_official_ann(path)


def test_missing_dir_and_bad_rule(tmp_path: Path) -> None:
    _write(tmp_path / "gold", {"d": GOLD_LINES})
    with pytest.raises(UserError, match="prediction folder not found"):
        score_dirs(tmp_path / "gold", tmp_path / "nope")
    with pytest.raises(UserError, match="gold folder not found"):
        score_dirs(tmp_path / "nope", tmp_path / "gold")
    with pytest.raises(UserError, match="unknown scoring rule"):
        score_sets({}, {}, rule="lenient")
    assert RULES == ("codalab", "standalone")


def test_score_documents_and_error_report() -> None:
    gold_docs = [
        Document(
            "d", "x" * 30, [Span(0, 5, "NORMALIZABLES"), Span(10, 14, "PROTEINAS"), Span(20, 22, "UNCLEAR")]
        ),
        Document("e", "x" * 30, [Span(1, 2, "PROTEINAS")]),
    ]
    pred = {"d": [Span(0, 5, "NORMALIZABLES"), Span(10, 15, "PROTEINAS"), Span(0, 5, "NORMALIZABLES")]}
    scores = score_documents(gold_docs, pred, rule="codalab")
    assert (scores.documents, _counts(scores), scores.missing_predictions) == (1, (1, 1, 1), ["e"])
    assert _counts(score_documents(gold_docs, pred, rule="standalone")) == (1, 1, 2)
    gold_sets = {doc.id: {(s.type, s.start, s.end) for s in doc.spans} for doc in gold_docs}
    system_sets = {"d": {(s.type, s.start, s.end) for s in pred["d"]}}
    assert error_report(gold_sets, system_sets, "standalone") == {
        "d": {
            "false_positives": [["PROTEINAS", 10, 15]],
            "false_negatives": [["PROTEINAS", 10, 14], ["UNCLEAR", 20, 22]],
        }
    }
    assert error_report(gold_sets, gold_sets, "codalab") == {}


def test_seqeval_f1() -> None:
    true = [["B-PROTEINAS", "I-PROTEINAS", "O", "B-NORMALIZABLES"]]
    assert seqeval_f1(true, true) == 1.0
    # Strict IOB2: an entity starting with I- is not an entity, so one of two gold entities is found.
    pred = [["I-PROTEINAS", "I-PROTEINAS", "O", "B-NORMALIZABLES"]]
    assert seqeval_f1(true, pred) == pytest.approx(2 / 3)


# ---- perturbations of the real gold test set, checked against independent arithmetic -----------------------

RETYPE = {
    "NORMALIZABLES": "PROTEINAS",
    "PROTEINAS": "NORMALIZABLES",
    "NO_NORMALIZABLES": "UNCLEAR",
    "UNCLEAR": "NORMALIZABLES",
}


def _perturb(gold: dict[str, set[tuple[str, int, int]]]):
    """Drop every 7th mention, shift every 11th by one char, retype every 13th; return system sets + outcomes."""
    system: dict[str, set[tuple[str, int, int]]] = {}
    outcomes = []  # (gold type, predicted type or None, exact match?)
    index = 0
    for doc_id in sorted(gold):
        system[doc_id] = set()
        for label, start, end in sorted(gold[doc_id], key=lambda t: (t[1], t[2], t[0])):
            index += 1
            if index % 7 == 0:
                outcomes.append((label, None, False))
                continue
            if index % 11 == 0:
                predicted = (label, start + 1, end + 1)
            elif index % 13 == 0:
                predicted = (RETYPE[label], start, end)
            else:
                predicted = (label, start, end)
            exact = predicted == (label, start, end)
            # A perturbed mention landing on another gold mention would make the arithmetic below wrong.
            assert exact or predicted not in gold[doc_id]
            system[doc_id].add(predicted)
            outcomes.append((label, predicted[0], exact))
    return system, outcomes


def _expected(outcomes, rule: str) -> tuple[int, int, int]:
    counted = (lambda label: label != "UNCLEAR") if rule == "codalab" else (lambda label: True)
    tp = fp = fn = 0
    for gold_label, predicted_label, exact in outcomes:
        if exact:
            tp += counted(gold_label)
            continue
        fn += counted(gold_label)
        if predicted_label is not None:
            fp += counted(predicted_label)
    return tp, fp, fn


@pytest.mark.corpus
@pytest.mark.parametrize("rule", RULES)
def test_perturbed_gold(pharmaconer_dir: Path, tmp_path: Path, rule: str) -> None:
    gold_dir = pharmaconer_dir / "test"
    gold = read_ann_dir(gold_dir)
    system, outcomes = _perturb(gold)
    assert len(outcomes) == 1876
    tp, fp, fn = _expected(outcomes, rule)
    pred_dir = tmp_path / "pred"
    pred_dir.mkdir()
    for doc_id, triples in system.items():
        lines = [
            f"T{i}\t{label} {start} {end}\tx\n" for i, (label, start, end) in enumerate(sorted(triples), 1)
        ]
        (pred_dir / f"{doc_id}.ann").write_text("".join(lines), encoding="utf-8")
    scores = score_dirs(gold_dir, pred_dir, rule)
    assert _counts(scores) == (tp, fp, fn)
    assert _counts(score_sets(gold, system, rule)) == (tp, fp, fn)
    precision, recall = tp / (tp + fp), tp / (tp + fn)
    assert scores.precision == precision and scores.recall == recall
    assert scores.f1 == 2 * precision * recall / (precision + recall)
    assert scores.documents == 250
    # Sanity of the perturbation itself: it must actually hurt both precision and recall.
    assert 0 < fp < fn < 1876

    result = _run_cli(
        str(gold_dir), str(pred_dir), "--rule", rule, "--json", "--errors", str(tmp_path / "e.json")
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == scores.to_dict()
    report = json.loads((tmp_path / "e.json").read_text(encoding="utf-8"))
    assert sum(len(doc["false_positives"]) for doc in report.values()) == fp
    assert sum(len(doc["false_negatives"]) for doc in report.values()) == fn


def test_cli_table_and_missing_warning(tmp_path: Path) -> None:
    gold = _write(tmp_path / "gold", {"d": GOLD_LINES, "e": GOLD_LINES})
    pred = _write(tmp_path / "pred", {"d": GOLD_LINES})
    result = _run_cli(str(gold), str(pred))
    assert result.returncode == 0, result.stderr
    assert "PROTEINAS" in result.stdout and "documents scored: 1" in result.stdout
    assert result.stderr.startswith("warning: 1 of 2 gold documents have no prediction file")
    missing = _run_cli(str(tmp_path / "nope"), str(pred))
    assert (
        missing.returncode == 2 and missing.stderr.startswith("error:") and "Traceback" not in missing.stderr
    )

"""Strict BRAT reader/writer: round trip, one-line user errors, the offset quirk, whole-corpus counts."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest

from clinical_ner.data.brat import (
    entity_types,
    format_ann,
    read_document,
    read_split,
    write_ann,
    write_predictions,
)
from clinical_ner.data.types import Span
from clinical_ner.errors import UserError

REPO_ROOT = Path(__file__).resolve().parents[2]
TEXT = "Se pauta omeprazol y calcio.\nLa PTH era normal."
QUIRK_DOC = "S0211-69952015000200015-1"


def _make_doc(folder: Path, ann: str, text: str = TEXT, doc_id: str = "doc1") -> Path:
    txt_path = folder / f"{doc_id}.txt"
    txt_path.write_text(text, encoding="utf-8", newline="")
    (folder / f"{doc_id}.ann").write_text(ann, encoding="utf-8", newline="")
    return txt_path


def test_round_trip(tmp_path: Path) -> None:
    spans = [Span(32, 35, "PROTEINAS"), Span(9, 18, "NORMALIZABLES"), Span(21, 27, "NORMALIZABLES")]
    txt_path = tmp_path / "doc1.txt"
    txt_path.write_text(TEXT, encoding="utf-8", newline="")
    write_ann(tmp_path / "doc1.ann", TEXT, spans + [spans[0]])
    assert (tmp_path / "doc1.ann").read_text(encoding="utf-8").splitlines() == [
        "T1\tNORMALIZABLES 9 18\tomeprazol",
        "T2\tNORMALIZABLES 21 27\tcalcio",
        "T3\tPROTEINAS 32 35\tPTH",
    ]
    doc = read_document(txt_path)
    assert doc.id == "doc1" and doc.text == TEXT
    assert doc.spans == sorted(spans)
    assert entity_types([doc]) == ["NORMALIZABLES", "PROTEINAS"]
    assert not list(tmp_path.glob("*.tmp"))


def test_read_ignores_other_lines_sorts_and_dedupes(tmp_path: Path) -> None:
    ann = (
        "T2\tPROTEINAS 32 35\tPTH\n"
        "#1\tAnnotatorNotes T2\t4076007\n"
        "\n"
        "N1\tReference T2 SNOMED:1\tPTH\n"
        "A1\tNegated T2\n"
        "R1\tRel Arg1:T1 Arg2:T2\n"
        "*\tEquiv T1 T2\n"
        "T1\tNORMALIZABLES 9 18\tomeprazol\n"
        "T3\tNORMALIZABLES 9 18\tomeprazol\n"
    )
    doc = read_document(_make_doc(tmp_path, ann))
    assert doc.spans == [Span(9, 18, "NORMALIZABLES"), Span(32, 35, "PROTEINAS")]


def test_missing_ann_means_no_mentions(tmp_path: Path) -> None:
    txt_path = tmp_path / "lonely.txt"
    txt_path.write_text(TEXT, encoding="utf-8")
    assert read_document(txt_path).spans == []


def test_empty_spans_write_empty_file(tmp_path: Path) -> None:
    write_ann(tmp_path / "empty.ann", TEXT, [])
    assert (tmp_path / "empty.ann").read_bytes() == b""


@pytest.mark.parametrize(
    ("ann", "line", "what"),
    [
        ("T1\tNORMALIZABLES 9 18\n", 1, "3 tab-separated fields"),
        ("#1\tnote\nT1\tNORMALIZABLES 9\tomeprazol\n", 2, "found 2 token"),
        ("T1\tNORMALIZABLES 9 x18\tomeprazol\n", 1, "not an integer"),
        ("T1\tNORMALIZABLES -1 18\tomeprazol\n", 1, "negative"),
        ("T1\tNORMALIZABLES 18 18\tomeprazol\n", 1, "not after start"),
        ("T1\tNORMALIZABLES 9 999\tomeprazol\n", 1, "past the end"),
        ("T1\tNORMALIZABLES 9 12;13 18\tomeprazol\n", 1, "discontinuous"),
        ("Tomeprazol y calcio 9 18\n", 1, "3 tab-separated fields"),
        (
            "T1\tNORMALIZABLES 9 18\tomeprazol\nomeprazol y calcio sin tabuladores\n",
            2,
            "not a BRAT annotation",
        ),
        ("\n \nx\tNORMALIZABLES 9 18\tomeprazol\n", 3, "not a BRAT annotation"),
    ],
)
def test_malformed_ann_raises_one_line_user_error(tmp_path: Path, ann: str, line: int, what: str) -> None:
    txt_path = _make_doc(tmp_path, ann)
    with pytest.raises(UserError) as info:
        read_document(txt_path)
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith(f"{tmp_path / 'doc1.ann'}:{line}: ")
    assert what in message
    assert "omeprazol" not in message and "calcio" not in message


def test_unknown_type_is_user_error(tmp_path: Path) -> None:
    txt_path = _make_doc(tmp_path, "T1\tDRUG 9 18\tomeprazol\n")
    assert read_document(txt_path, types=None).spans == [Span(9, 18, "DRUG")]
    with pytest.raises(UserError, match=r"doc1\.ann:1: T1 has unknown type 'DRUG'") as info:
        read_document(txt_path, types={"NORMALIZABLES", "PROTEINAS"})
    assert "omeprazol" not in str(info.value)


def test_undecodable_text_is_user_error(tmp_path: Path) -> None:
    txt_path = tmp_path / "bad.txt"
    txt_path.write_bytes(b"Paciente con " + b"\xff\xfe fiebre")
    with pytest.raises(UserError) as info:
        read_document(txt_path)
    message = str(info.value)
    assert message == f"{txt_path}: not valid UTF-8 text (byte 13)"
    assert "Paciente" not in message


def test_offset_repair_shifts_or_drops(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    ann = (
        "T1\tNORMALIZABLES 11 20\tomeprazol\n"  # 2 chars late: repaired to 9-18
        "T2\tNORMALIZABLES 2 8\tcalcio\n"  # 19 chars early: dropped
        "T3\tPROTEINAS 32 35\tPTH\n"
    )
    with caplog.at_level(logging.WARNING, logger="clinical_ner.data.brat"):
        doc = read_document(_make_doc(tmp_path, ann))
    assert doc.spans == [Span(9, 18, "NORMALIZABLES"), Span(32, 35, "PROTEINAS")]
    messages = [record.getMessage() for record in caplog.records]
    assert len(messages) == 2
    assert "doc1" in messages[0] and "T1" in messages[0] and "11-20 -> 9-18" in messages[0]
    assert "doc1" in messages[1] and "T2" in messages[1] and "dropped" in messages[1]
    assert not any(word in message for message in messages for word in ("omeprazol", "calcio", "pauta"))


def test_format_ann_rejects_newline_and_bad_spans() -> None:
    with pytest.raises(ValueError, match="line break"):
        format_ann(TEXT, [Span(21, 31, "NORMALIZABLES")])
    with pytest.raises(ValueError):
        format_ann(TEXT, [Span(5, 500, "NORMALIZABLES")])


def test_write_predictions_creates_folder(tmp_path: Path) -> None:
    out = tmp_path / "a" / "b"
    write_predictions(out, {"d1": (TEXT, [Span(9, 18, "NORMALIZABLES")]), "d2": (TEXT, [])})
    assert sorted(path.name for path in out.iterdir()) == ["d1.ann", "d2.ann"]
    assert (out / "d1.ann").read_text(encoding="utf-8") == "T1\tNORMALIZABLES 9 18\tomeprazol\n"
    assert (out / "d2.ann").read_text(encoding="utf-8") == ""


def test_write_predictions_is_all_or_nothing(tmp_path: Path, monkeypatch) -> None:
    import clinical_ner.data.brat as brat

    real, calls = brat.format_ann, []

    def disk_fills_at_the_third(doc_text, spans):
        calls.append(1)
        if len(calls) == 3:
            raise OSError(28, "No space left on device")
        return real(doc_text, spans)

    monkeypatch.setattr(brat, "format_ann", disk_fills_at_the_third)
    with pytest.raises(OSError):
        write_predictions(tmp_path, {f"d{i}": (TEXT, []) for i in range(5)})
    assert list(tmp_path.iterdir()) == []  # neither two of five predictions nor the staging folder


def test_read_split_errors(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="folder not found"):
        read_split(tmp_path / "nope")
    with pytest.raises(UserError, match="no .txt"):
        read_split(tmp_path)


def test_evaluate_cli_malformed_ann_exits_2(tmp_path: Path) -> None:
    gold, pred = tmp_path / "gold", tmp_path / "pred"
    gold.mkdir()
    pred.mkdir()
    (gold / "d1.ann").write_text("T1\tNORMALIZABLES 9 18\tomeprazol\n", encoding="utf-8")
    (pred / "d1.ann").write_text("T1\tNORMALIZABLES 9 1x8\tomeprazol\n", encoding="utf-8")
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    result = subprocess.run(
        [sys.executable, "-m", "clinical_ner.evaluate", str(gold), str(pred)],
        capture_output=True,
        text=True,
        cwd=REPO_ROOT,
        env=env,
        check=False,
    )
    assert result.returncode == 2
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:")
    assert f"{pred / 'd1.ann'}:1" in lines[0]
    assert "Traceback" not in result.stderr and "omeprazol" not in result.stderr
    assert result.stdout == ""


@pytest.mark.corpus
def test_quirk_document_repaired(pharmaconer_dir: Path, caplog: pytest.LogCaptureFixture) -> None:
    txt_path = pharmaconer_dir / "train" / f"{QUIRK_DOC}.txt"
    with caplog.at_level(logging.WARNING, logger="clinical_ner.data.brat"):
        doc = read_document(txt_path)
    messages = [record.getMessage() for record in caplog.records]
    assert len(messages) == 5
    assert all("->" in message and "dropped" not in message for message in messages)
    assert sorted(message.split()[1] for message in messages) == ["T10", "T11", "T5", "T7", "T9"]
    assert all(message.startswith(f"{QUIRK_DOC}: T") for message in messages)
    assert all("Bence" not in message and "calcio" not in message for message in messages)
    assert "T5 offsets 1376-1387 -> 1375-1386" in " ".join(messages)
    # Every one of the 12 mentions is kept and now covers exactly its annotated surface text.
    surfaces = {}
    for line in txt_path.with_suffix(".ann").read_text(encoding="utf-8").splitlines():
        if line.startswith("T"):
            _, annotation, surface = line.split("\t")
            surfaces[annotation.split()[0], surface] = surfaces.get((annotation.split()[0], surface), 0) + 1
    assert len(doc.spans) == 12
    kept: dict[tuple[str, str], int] = {}
    for span in doc.spans:
        key = (span.type, doc.surface(span))
        kept[key] = kept.get(key, 0) + 1
    assert kept == surfaces


@pytest.mark.corpus
@pytest.mark.parametrize(
    ("split", "docs", "mentions"), [("train", 500, 3822), ("dev", 250, 1926), ("test", 250, 1876)]
)
def test_whole_corpus_reads(pharmaconer_dir: Path, split: str, docs: int, mentions: int) -> None:
    types = {"NORMALIZABLES", "PROTEINAS", "NO_NORMALIZABLES", "UNCLEAR"}
    documents = read_split(pharmaconer_dir / split, types)
    assert len(documents) == docs
    assert [doc.id for doc in documents] == sorted(doc.id for doc in documents)
    assert sum(len(doc.spans) for doc in documents) == mentions
    assert entity_types(documents) == sorted(types)

"""Pretraining corpus readers (SPL XML, JSON Lines, .txt), location, held-out split and seeded language mix."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from clinical_ner.errors import UserError
from clinical_ner.pretrain.corpora import (
    locate_corpora,
    mix_languages,
    read_jsonl,
    read_language,
    split_heldout,
)
from clinical_ner.pretrain.spl import read_spl

FIXTURES = Path(__file__).parent.parent / "fixtures" / "download"


def test_spl_sections_markup_stripped():
    docs = dict(read_spl(FIXTURES / "spl_minimal.xml"))
    assert list(docs) == ["spl_minimal#1", "spl_minimal#2"]  # the product-data section has no prose
    assert docs["spl_minimal#1"] == (
        "1 INDICATIONS AND USAGE\n"
        "Examplamine is a placeholder used only in software tests.1\n"
        "First item.\nSecond\nline.\n"
        "1.1 Subsection\nNested text."
    )
    assert docs["spl_minimal#2"] == "6 ADVERSE REACTIONS\nEvent | Rate\nNone | 0%"


def test_shared_spl_sample(corpora_dir):
    docs = read_language(corpora_dir / "en")
    by_file = {}
    for doc in docs:
        by_file.setdefault(doc.id.split("#")[0], []).append(doc)
    assert set(by_file) == {
        "64f8040f-938d-4236-8e22-c838c9b5f8da",
        "cough",
        "humira",
        "lipitor-orig",
        "lipitor-repack",
        "no-title",
    }
    assert all(len(sections) >= 5 for sections in by_file.values())
    text = "\n".join(doc.text for doc in docs)
    assert "INDICATIONS AND USAGE" in text and "adalimumab" in text.lower()
    assert re.search(r"</?[A-Za-z][\w:]*[\s/>]", text) is None  # no markup left
    assert "urn:hl7-org:v3" not in text
    words = sum(len(doc.text.split()) for doc in docs)
    assert 55_000 < words < 75_000  # SOURCE.md: ~66k words inside <text>, titles added


def test_shared_jsonl_sample(corpora_dir):
    docs = read_language(corpora_dir / "es")
    assert len(docs) == 800
    assert docs[0].id.startswith("ct-ebm-sp-v3:") and docs[0].text.startswith("EudraCT Nº:")


def test_txt_folder_and_mixed_formats(tmp_path):
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "a.txt").write_text("Primer documento.", encoding="utf-8")
    (tmp_path / "b.txt").write_text("Segundo.", encoding="utf-8")
    (tmp_path / "c.jsonl").write_text(json.dumps({"id": "x1", "text": "Tercero."}) + "\n\n", encoding="utf-8")
    (tmp_path / "README.md").write_text("not corpus", encoding="utf-8")
    (tmp_path / ".hidden.txt").write_text("skipped", encoding="utf-8")
    docs = read_language(tmp_path)
    assert [(d.id, d.text) for d in docs] == [
        ("b", "Segundo."),
        ("x1", "Tercero."),
        ("sub/a", "Primer documento."),
    ]


def test_bad_jsonl_line_names_the_line(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text('{"id": "1", "text": "ok"}\n{"id": "2"}\n', encoding="utf-8")
    with pytest.raises(UserError, match=r"bad\.jsonl:2: expected a JSON object"):
        read_jsonl(path)


def test_duplicate_ids_rejected(tmp_path):
    line = json.dumps({"id": "same", "text": "t"})
    (tmp_path / "a.jsonl").write_text(line + "\n", encoding="utf-8")
    (tmp_path / "b.jsonl").write_text(line + "\n", encoding="utf-8")
    with pytest.raises(UserError, match="already used"):
        read_language(tmp_path)


def test_missing_corpus_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.delenv("CLINICAL_NER_CORPORA", raising=False)
    with pytest.raises(UserError, match="set CLINICAL_NER_CORPORA"):
        locate_corpora(None)
    with pytest.raises(UserError, match="is not a folder"):
        locate_corpora(tmp_path / "nowhere")
    monkeypatch.setenv("CLINICAL_NER_CORPORA", str(tmp_path))
    assert locate_corpora(None) == tmp_path
    with pytest.raises(UserError, match="does not exist"):
        read_language(tmp_path / "es")


def test_heldout_split_by_document_is_seeded_and_disjoint():
    items = list(range(50))
    train, val = split_heldout(items, 0.1, seed=3)
    assert len(val) == 5 and sorted(train + val) == items
    assert split_heldout(items, 0.1, seed=3) == (train, val)
    assert split_heldout(items, 0.1, seed=4)[1] != val
    assert len(split_heldout(items[:3], 0.1, seed=0)[1]) == 1  # at least one held out
    with pytest.raises(UserError):
        split_heldout(items, 1.0, seed=0)


def test_bilingual_mix_is_seeded_and_respects_ratio():
    es = [f"es{i:03d}" * 2 for i in range(400)]  # 400 docs of 10 characters
    en = [f"en{i:03d}" * 4 for i in range(100)]  # 100 docs of 20 characters
    natural = mix_languages({"es": es, "en": en}, len, None, seed=1)
    assert sorted(natural) == sorted(es + en)
    assert natural == mix_languages({"es": es, "en": en}, len, None, seed=1)
    assert natural != mix_languages({"es": es, "en": en}, len, None, seed=2)
    half = mix_languages({"es": es, "en": en}, len, 0.5, seed=1)
    es_tokens = sum(len(d) for d in half if d.startswith("es"))
    en_tokens = sum(len(d) for d in half if d.startswith("en"))
    assert all(d in half for d in en)  # the scarcer side is kept whole, nothing repeated
    assert len(set(half)) == len(half)
    assert abs(es_tokens / (es_tokens + en_tokens) - 0.5) < 0.05
    mostly_en = mix_languages({"es": es, "en": en}, len, 0.2, seed=1)
    es_share = sum(len(d) for d in mostly_en if d.startswith("es")) / sum(len(d) for d in mostly_en)
    assert abs(es_share - 0.2) < 0.05

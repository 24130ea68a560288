"""The synthetic corpus: deterministic per seed, exact offsets, its own entity types."""

from __future__ import annotations

from pathlib import Path

import pytest

from clinical_ner.data.brat import read_split
from clinical_ner.data.synthetic import ENTITY_TYPES, generate_synthetic_corpus, main, synthetic_splits

PHARMACONER_TYPES = {"NORMALIZABLES", "PROTEINAS", "NO_NORMALIZABLES", "UNCLEAR"}


def _tree_bytes(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _raw_ann_lines(root: Path):
    """(text, T-line fields) for every mention, parsed by hand so the test does not trust the BRAT reader."""
    for ann in sorted(root.rglob("*.ann")):
        text = ann.with_suffix(".txt").read_text("utf-8")
        for line in ann.read_text("utf-8").splitlines():
            mention_id, annotation, surface = line.split("\t")
            label, start, end = annotation.split()
            yield text, mention_id, label, int(start), int(end), surface


def test_layout_and_sizes(tmp_path):
    out = generate_synthetic_corpus(tmp_path / "synth", n_train=7, n_dev=3, n_test=2, seed=1)
    assert out == tmp_path / "synth"
    for split, n in (("train", 7), ("dev", 3), ("test", 2)):
        assert len(list((out / split).glob("*.txt"))) == n
        assert len(list((out / split).glob("*.ann"))) == n


def test_same_seed_same_bytes_other_seed_differs(tmp_path):
    a = _tree_bytes(generate_synthetic_corpus(tmp_path / "a", seed=3))
    b = _tree_bytes(generate_synthetic_corpus(tmp_path / "b", seed=3))
    c = _tree_bytes(generate_synthetic_corpus(tmp_path / "c", seed=4))
    assert a == b
    assert a.keys() == c.keys()
    assert a != c


def test_offsets_are_exact(tmp_path):
    out = generate_synthetic_corpus(tmp_path, seed=0)
    lines = list(_raw_ann_lines(out))
    assert len(lines) > 100
    for text, _, _, start, end, surface in lines:
        assert text[start:end] == surface
        # Mentions never start or end with whitespace, so token alignment is clean.
        assert surface == surface.strip()


def test_types_are_its_own_and_all_used(tmp_path):
    out = generate_synthetic_corpus(tmp_path, seed=0)
    types = {label for *_, label, _, _, _ in _raw_ann_lines(out)}
    assert types == set(ENTITY_TYPES)
    assert not types & PHARMACONER_TYPES


def test_corpus_has_the_variety_tests_rely_on(tmp_path):
    splits = synthetic_splits(seed=0)
    docs = [doc for split_docs in splits.values() for doc in split_docs]
    surfaces = [doc.surface(span) for doc in docs for span in doc.spans]
    assert any(not doc.spans for doc in docs), "some documents must have no mention"
    assert any(" " in s for s in surfaces), "some mentions must be multi-word"
    assert any(set(s) & set("áéíóúñ") for s in surfaces), "some mentions must carry accents"
    assert all(doc.text.count(".") >= 3 for doc in docs), "several sentences per document"
    for doc in docs:
        assert doc.spans == sorted(doc.spans)
        assert all(a.end <= b.start for a, b in zip(doc.spans, doc.spans[1:], strict=False))


def test_brat_reader_round_trip(tmp_path):
    out = generate_synthetic_corpus(tmp_path, n_train=10, n_dev=2, n_test=2, seed=5)
    expected = synthetic_splits(10, 2, 2, seed=5)
    for split in ("train", "dev", "test"):
        assert read_split(out / split) == expected[split]


def test_rerun_with_fewer_docs_removes_stale_files(tmp_path):
    generate_synthetic_corpus(tmp_path, n_train=5, n_dev=2, n_test=2)
    generate_synthetic_corpus(tmp_path, n_train=2, n_dev=2, n_test=2)
    assert len(list((tmp_path / "train").iterdir())) == 4


def test_negative_size_is_a_user_error():
    from clinical_ner.errors import UserError

    with pytest.raises(UserError):
        synthetic_splits(n_train=-1)


def test_cli(tmp_path, capsys):
    main(["--out", str(tmp_path / "cli"), "--seed", "2", "--n-train", "3", "--n-dev", "1", "--n-test", "1"])
    assert len(list((tmp_path / "cli" / "train").glob("*.txt"))) == 3
    assert str(tmp_path / "cli") in capsys.readouterr().out

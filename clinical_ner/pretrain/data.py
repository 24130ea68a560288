"""The pretraining stage's data: corpus files -> cached token ids -> held-out split -> language mix -> blocks."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from clinical_ner.config import CorpusConfig, PretrainConfig
from clinical_ner.data.types import Document
from clinical_ner.errors import UserError
from clinical_ner.pretrain.corpora import (
    corpus_files,
    languages,
    locate_corpora,
    mix_languages,
    read_language,
    split_heldout,
)
from clinical_ner.pretrain.packing import (
    PackedBlocks,
    file_fingerprint,
    load_or_tokenize,
    pack,
    subsample_blocks,
    tokenize_documents,
    tokens_cache_key,
)

VAL = "val"  # the corpus's held-out slice
PHARMACONER_DEV = "pharmaconer_dev"  # does drug-text pretraining transfer to clinical cases?


@dataclass
class CorpusSource:
    """One language folder of the corpus and the fingerprint of its files."""

    language: str
    folder: Path
    files: list[dict]


def corpus_sources(corpus: CorpusConfig) -> list[CorpusSource]:
    """The language folders the corpus option reads, with their files' paths, sizes and sha256."""
    root = locate_corpora(corpus.root)
    sources = []
    for lang in languages(corpus.name):
        folder = root / lang
        sources.append(CorpusSource(lang, folder, file_fingerprint(corpus_files(folder), folder)))
    return sources


@dataclass
class PretrainData:
    """Packed training blocks and the named evaluation sets (held-out corpus slice, PharmaCoNER dev)."""

    train: PackedBlocks
    evals: dict[str, PackedBlocks]
    documents: dict[str, int] = field(default_factory=dict)


def _cap(packed: PackedBlocks, max_tokens: int | None, seed: int) -> PackedBlocks:
    return subsample_blocks(packed, max_tokens, seed)


def build_pretrain_data(
    corpus: CorpusConfig,
    settings: PretrainConfig,
    sources: Sequence[CorpusSource],
    tokenizer,
    tokenizer_hash: str,
    dev_docs: Sequence[Document],
    cache: Path,
) -> PretrainData:
    """Tokenize each language once (cached), hold out `val_fraction` of its documents, mix the training
    documents (seeded, `es_ratio`), and pack everything into `block_size` blocks."""
    train_by_lang: dict[str, list[np.ndarray]] = {}
    val_docs: list[np.ndarray] = []
    documents: dict[str, int] = {}
    for source in sources:
        key = tokens_cache_key(source.files, tokenizer_hash)
        tokenized = load_or_tokenize(
            source.language, key, lambda folder=source.folder: read_language(folder), tokenizer, cache
        )
        train, val = split_heldout(tokenized.docs(), corpus.val_fraction, corpus.seed)
        train_by_lang[source.language] = train
        val_docs += val
        documents[f"{source.language}_train"] = len(train)
        documents[f"{source.language}_val"] = len(val)
    mixed = mix_languages(train_by_lang, len, corpus.es_ratio, corpus.seed)
    documents["train"] = len(mixed)
    block = settings.block_size
    train_blocks = _cap(pack(mixed, block), settings.max_tokens, settings.seed)
    evals = {
        VAL: _cap(pack(val_docs, block), settings.eval_max_tokens, settings.seed),
        PHARMACONER_DEV: _cap(
            pack(tokenize_documents(dev_docs, tokenizer).docs(), block),
            settings.eval_max_tokens,
            settings.seed,
        ),
    }
    empty = [name for name, packed in {"train": train_blocks, **evals}.items() if len(packed.blocks) == 0]
    if empty:
        raise UserError(
            f"pretraining set(s) {', '.join(empty)} hold fewer than pretrain.block_size={block} tokens: "
            "add documents or lower the block size"
        )
    return PretrainData(train_blocks, evals, documents)

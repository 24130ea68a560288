"""Tokenize a corpus once (cached on disk) and pack its documents into fixed-length causal-LM blocks.

Each document becomes `BOS text EOS` (as in Llama pretraining); documents are concatenated in the given order
and cut into blocks of exactly `block_size` tokens: no padding, no overlap, every token used once. A long
document simply continues into the next block. The final partial block (< block_size tokens) is dropped;
`PackedBlocks.dropped_tokens` reports it.

Attention inside a block is plain causal, also across a document boundary: the EOS/BOS pair marks it, this
is what Llama-style pretraining does, and it keeps the fused causal attention kernel (no per-document masks,
no attention_mask at all). Position ids run on across the boundary for the same reason.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
import zipfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from filelock import FileLock
from torch.utils.data import Dataset

from clinical_ner.cache.manifest import broken_file, digest
from clinical_ner.data.types import Document
from clinical_ner.files.atomic import atomic_write_json
from clinical_ner.files.digests import file_digest, json_digest

log = logging.getLogger(__name__)

FORMAT_VERSION = 1  # bump when the per-document token layout changes
_BATCH = 256  # documents per tokenizer call


@dataclass
class TokenizedDocs:
    """Token ids of many documents in one flat array: document i is `tokens[offsets[i]:offsets[i + 1]]`."""

    ids: list[str]
    tokens: np.ndarray  # int32
    offsets: np.ndarray  # int64, len(ids) + 1

    def __len__(self) -> int:
        return len(self.ids)

    def doc(self, index: int) -> np.ndarray:
        """Token ids of document `index` (BOS and EOS included)."""
        return self.tokens[self.offsets[index] : self.offsets[index + 1]]

    def docs(self) -> list[np.ndarray]:
        """Every document's token ids, in order."""
        return [self.doc(i) for i in range(len(self))]


def tokenize_documents(docs: Sequence[Document], tokenizer) -> TokenizedDocs:
    """`BOS ids EOS` for every document, batched through the fast tokenizer."""
    bos, eos = tokenizer.bos_token_id, tokenizer.eos_token_id
    if bos is None or eos is None:
        raise ValueError("packing needs a tokenizer with both BOS and EOS tokens")
    pieces: list[np.ndarray] = []
    for start in range(0, len(docs), _BATCH):
        texts = [doc.text for doc in docs[start : start + _BATCH]]
        for ids in tokenizer(texts, add_special_tokens=False)["input_ids"]:
            pieces.append(np.asarray([bos, *ids, eos], dtype=np.int32))
    lengths = np.fromiter((len(p) for p in pieces), dtype=np.int64, count=len(pieces))
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    tokens = np.concatenate(pieces) if pieces else np.zeros(0, dtype=np.int32)
    return TokenizedDocs([doc.id for doc in docs], tokens, offsets)


def file_fingerprint(paths: Sequence[Path], root: Path) -> list[dict]:
    """Relative path, size and sha256 of each file: the corpus part of every cache key."""
    return [
        {"path": path.relative_to(root).as_posix(), "size": path.stat().st_size, "sha256": file_digest(path)}
        for path in paths
    ]


def tokens_cache_key(files: list[dict], tokenizer_hash: str) -> str:
    """Hex sha256 of (format version, tokenizer, corpus files)."""
    return json_digest([FORMAT_VERSION, tokenizer_hash, files])


def _save(path: Path, tokenized: TokenizedDocs) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            np.savez(
                handle, tokens=tokenized.tokens, offsets=tokenized.offsets, ids=np.asarray(tokenized.ids)
            )
        os.replace(tmp, path)  # atomic: a reader sees the old file, the new one, or none
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _load(path: Path) -> TokenizedDocs | None:
    """The cached arrays, or None when the file is missing or unreadable (then it is rebuilt)."""
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as data:
            tokenized = TokenizedDocs([str(i) for i in data["ids"]], data["tokens"], data["offsets"])
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as err:
        log.warning("tokenized corpus cache %s is unreadable (%s): rebuilding it", path, err)
        return None
    if len(tokenized.offsets) != len(tokenized.ids) + 1 or tokenized.offsets[-1] != len(tokenized.tokens):
        log.warning("tokenized corpus cache %s is inconsistent: rebuilding it", path)
        return None
    return tokenized


def load_or_tokenize(
    name: str, key: str, read: Callable[[], Sequence[Document]], tokenizer, cache: Path
) -> TokenizedDocs:
    """Token ids cached under `cache/tokenized/<name>-<key>.npz`; `read()` gives the documents on a miss.

    Concurrent jobs wait on a file lock so that only one tokenizes. `<file>.json` beside it records the file's
    size and sha256 (written after it); a file that no longer matches is tokenized again.
    """
    folder = Path(cache) / "tokenized"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}-{key[:20]}.npz"
    with FileLock(str(path) + ".lock"):
        tokenized = _load(path) if _intact(path) else None
        if tokenized is None:
            tokenized = tokenize_documents(read(), tokenizer)
            _save(path, tokenized)
            atomic_write_json(_promise(path), _record(path))
        elif not _promise(path).is_file():  # cached before the promises were written, and it loads
            atomic_write_json(_promise(path), _record(path))
    return tokenized


def _promise(path: Path) -> Path:
    return path.with_name(path.name + ".json")


def _record(path: Path) -> dict:
    return {"files": {path.name: {"size": path.stat().st_size, "sha256": digest(path)}}}


def _intact(path: Path) -> bool:
    """False (one line says why) when the cached file breaks its recorded size or sha256."""
    try:
        files = json.loads(_promise(path).read_text(encoding="utf-8"))["files"]
    except FileNotFoundError:
        return True  # no promise yet: _load's own checks decide
    except (OSError, ValueError, KeyError, TypeError) as err:
        log.warning("tokenized corpus cache %s: unreadable record (%s): rebuilding it", path, err)
        _promise(path).unlink(missing_ok=True)
        return False
    why = broken_file(path.parent, files)
    if why is not None:
        log.warning("tokenized corpus cache %s: %s: rebuilding it", path, why)
        _promise(path).unlink(missing_ok=True)
    return why is None


@dataclass
class PackedBlocks:
    """Fixed-length blocks of token ids and what packing left out."""

    blocks: np.ndarray  # (n_blocks, block_size) int64
    dropped_tokens: int  # the final partial block

    @property
    def tokens(self) -> int:
        return int(self.blocks.size)


def pack(docs: Sequence[np.ndarray], block_size: int) -> PackedBlocks:
    """Concatenate the documents in order and cut the stream into `block_size` blocks (last partial dropped)."""
    if block_size < 2:
        raise ValueError(f"block_size must be >= 2, got {block_size}")
    stream = np.concatenate(list(docs)).astype(np.int64) if len(docs) else np.zeros(0, dtype=np.int64)
    count = len(stream) // block_size
    return PackedBlocks(
        stream[: count * block_size].reshape(count, block_size), len(stream) - count * block_size
    )


def subsample_blocks(packed: PackedBlocks, max_tokens: int | None, seed: int) -> PackedBlocks:
    """A seeded subset of at most `max_tokens // block_size` blocks (kept in order); all when None."""
    if max_tokens is None:
        return packed
    count = max(1, max_tokens // packed.blocks.shape[1])
    if count >= len(packed.blocks):
        return packed
    keep = np.sort(np.random.default_rng(seed).choice(len(packed.blocks), size=count, replace=False))
    return PackedBlocks(packed.blocks[keep], packed.dropped_tokens)


class BlockDataset(Dataset):
    """Packed blocks as `{"input_ids": LongTensor[block_size]}`; the default collate stacks them (no padding)."""

    def __init__(self, blocks: np.ndarray) -> None:
        self.blocks = torch.from_numpy(np.ascontiguousarray(blocks, dtype=np.int64))

    def __len__(self) -> int:
        return len(self.blocks)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        return {"input_ids": self.blocks[index]}

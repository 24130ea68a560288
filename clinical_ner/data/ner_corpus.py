"""Load the NER corpus a config names (PharmaCoNER or the synthetic one) as train/dev/test documents."""

from __future__ import annotations

from pathlib import Path

from clinical_ner.config import DataConfig
from clinical_ner.data.brat import entity_types, read_split
from clinical_ner.data.pharmaconer import SPLITS, locate_corpus
from clinical_ner.data.synthetic import synthetic_splits
from clinical_ner.data.types import Document
from clinical_ner.errors import UserError


def load_ner_splits(data: DataConfig, cache: Path) -> dict[str, list[Document]]:
    """Documents of each split, validated (no limits applied: see `limit_splits`)."""
    types = list(data.types) if data.types else None
    if data.name == "pharmaconer":
        root = locate_corpus(data.root, cache, data.download)
        splits = {split: read_split(root / split, types) for split in SPLITS}
    elif data.name == "synthetic":
        if data.root:
            splits = {split: read_split(Path(data.root) / split, types) for split in SPLITS}
        else:
            splits = synthetic_splits()
    else:
        raise UserError(f"unknown data.name '{data.name}' (expected pharmaconer or synthetic)")
    return splits


def limit_splits(splits: dict[str, list[Document]], data: DataConfig) -> dict[str, list[Document]]:
    """Keep the first `train_limit` training and `eval_limit` dev/test documents (quick runs)."""
    limits = {"train": data.train_limit, "dev": data.eval_limit, "test": data.eval_limit}
    return {split: docs[: limits[split]] if limits[split] else docs for split, docs in splits.items()}


def corpus_types(data: DataConfig, splits: dict[str, list[Document]]) -> list[str]:
    """Entity types from config, else every type found in the training and dev data."""
    if data.types:
        return sorted(data.types)
    found = entity_types(splits["train"] + splits["dev"])
    if not found:
        raise UserError("the training data holds no entity mention: nothing to learn")
    return found

"""LightningDataModule for token classification: documents -> labelled windows -> padded batches."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import lightning as L
from torch.utils.data import DataLoader, Dataset

from clinical_ner.approaches.tokencls.tagging import IGNORE, Window, encode_document
from clinical_ner.data.batching import (
    Batching,
    LengthGroupedBatchSampler,
    PadCollator,
    eval_batches,
    keep_empty,
)
from clinical_ner.data.types import Document


@dataclass(frozen=True)
class Windowing:
    """How documents become labelled windows (`approach.*` of token classification)."""

    label_position: str  # all | first | last sub-token of each word carries its label
    max_length: int  # sub-tokens per window, BOS included
    stride: int  # overlap between windows of a long sentence
    empty_fraction: float = 1.0  # share of mention-free training windows kept (seeded)

    @classmethod
    def from_config(cls, approach) -> Windowing:
        """From `cfg.approach` (or a saved model's inference settings, which lack `empty_fraction`)."""
        fraction = getattr(approach, "empty_fraction", 1.0)
        return cls(str(approach.label_position), approach.max_length, approach.stride, fraction)


@dataclass
class EncodedSplit:
    """A split's documents and their windows; `doc_windows[doc_id]` lists window indices in text order."""

    docs: list[Document]
    windows: list[Window]
    doc_windows: dict[str, list[int]]

    @property
    def lengths(self) -> list[int]:
        return [len(w.input_ids) for w in self.windows]

    @property
    def tokens(self) -> int:
        return sum(self.lengths)


def encode_split(
    docs: Sequence[Document],
    tokenizer,
    label2id: Mapping[str, int],
    label_position: str,
    max_length: int,
    stride: int,
    training: bool = False,
) -> EncodedSplit:
    """Encode every document of a split into windows (labels from the gold char spans); only `training`
    splits are cut into sentences with the gold spans (inference inputs never read gold)."""
    windows: list[Window] = []
    doc_windows: dict[str, list[int]] = {}
    for doc in docs:
        encoded = encode_document(tokenizer, doc, label2id, label_position, max_length, stride, training)
        doc_windows[doc.id] = list(range(len(windows), len(windows) + len(encoded)))
        windows += encoded
    return EncodedSplit(list(docs), windows, doc_windows)


class WindowDataset(Dataset):
    """Windows as dicts the collator pads; `index` lets predictions find their window again."""

    def __init__(self, windows: Sequence[Window], with_labels: bool = True) -> None:
        self.windows = windows
        self.with_labels = with_labels

    def __len__(self) -> int:
        return len(self.windows)

    def __getitem__(self, index: int) -> dict:
        window = self.windows[index]
        item = {"input_ids": window.input_ids, "index": index}
        if self.with_labels:
            item["labels"] = window.labels
        return item


class TokenClsDataModule(L.LightningDataModule):
    """Train/dev/test windows with length-grouped, dynamically padded batches."""

    def __init__(
        self,
        splits: Mapping[str, Sequence[Document]],
        tokenizer,
        label2id: Mapping[str, int],
        windowing: Windowing,
        batching: Batching,
    ) -> None:
        super().__init__()
        w, self.batching = windowing, batching
        self.encoded = {
            name: encode_split(
                docs, tokenizer, label2id, w.label_position, w.max_length, w.stride, name == "train"
            )
            for name, docs in splits.items()
        }
        # mention-free training windows kept (a seeded share): ~72% of PharmaCoNER's training tokens have none
        windows = self.encoded["train"].windows if "train" in self.encoded else []
        outside = {IGNORE, label2id.get("O", IGNORE)}
        empty = [i for i, w in enumerate(windows) if all(label in outside for label in w.labels)]
        self.train_windows = keep_empty(windows, empty, w.empty_fraction, batching.seed)
        self.collate = PadCollator(tokenizer.pad_token_id)

    def train_sampler(self) -> LengthGroupedBatchSampler:
        """The training batch order (also used by the benchmark to measure padding)."""
        return self.batching.train_sampler([len(w.input_ids) for w in self.train_windows])

    def train_dataloader(self) -> DataLoader:
        return DataLoader(
            WindowDataset(self.train_windows),
            batch_sampler=self.train_sampler(),
            collate_fn=self.collate,
            num_workers=self.batching.num_workers,
        )

    def eval_dataloader(self, split: str) -> DataLoader:
        """Deterministic batches over a split, longest windows first."""
        encoded = self.encoded[split]
        return DataLoader(
            WindowDataset(encoded.windows),
            batch_sampler=eval_batches(encoded.lengths, self.batching.eval_batch_size),
            collate_fn=self.collate,
            num_workers=self.batching.num_workers,
        )

    def val_dataloader(self) -> DataLoader:
        return self.eval_dataloader("dev")

    def test_dataloader(self) -> DataLoader:
        return self.eval_dataloader("test")

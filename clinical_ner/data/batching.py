"""Length-grouped batches and dynamic padding: most of a batch's tokens are real, not padding."""

from __future__ import annotations

import random
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch.utils.data import Sampler


@dataclass(frozen=True)
class Batching:
    """How a datamodule batches: training and evaluation batch sizes, the seed of the training order, and
    length grouping (`data.*` and the run seed)."""

    batch_size: int
    eval_batch_size: int
    seed: int
    mega_batch_factor: int = 100
    group_by_length: bool = True
    num_workers: int = 0

    @classmethod
    def from_config(cls, cfg: Any) -> Batching:
        """From a run config: `data.*` and `seed`."""
        d = cfg.data
        return cls(
            d.batch_size, d.eval_batch_size, cfg.seed, d.mega_batch_factor, d.group_by_length, d.num_workers
        )

    def train_sampler(self, lengths: Sequence[int]) -> LengthGroupedBatchSampler:
        """The training batch order over examples of these lengths."""
        return LengthGroupedBatchSampler(
            lengths, self.batch_size, self.seed, self.mega_batch_factor, self.group_by_length
        )


class LengthGroupedBatchSampler(Sampler[list[int]]):
    """Shuffle, cut into pools of `batch_size * mega_batch_factor`, sort each pool by length, batch it,
    then shuffle the batches. Seeded by (seed, epoch): same seed, same order.

    Distributed (`num_replicas` > 1; by default read from torch.distributed once a process group exists):
    every rank builds the same global batches of `batch_size * num_replicas` and keeps its contiguous slice,
    so N ranks of `batch_size` see exactly what one process of `N * batch_size` would, step for step
    (Lightning can only inject its DistributedSampler into plain samplers, not into this one).
    """

    def __init__(
        self,
        lengths: Sequence[int],
        batch_size: int,
        seed: int,
        mega_batch_factor: int = 100,
        group_by_length: bool = True,
        num_replicas: int | None = None,
        rank: int | None = None,
    ) -> None:
        default_replicas, default_rank = _process_group()
        self.num_replicas = default_replicas if num_replicas is None else num_replicas
        self.rank = default_rank if rank is None else rank
        if not 0 <= self.rank < self.num_replicas:
            raise ValueError(f"rank {self.rank} outside 0..{self.num_replicas - 1}")
        self.lengths = list(lengths)
        self.batch_size = batch_size
        self.seed = seed
        self.global_batch = batch_size * self.num_replicas
        self.pool = self.global_batch * mega_batch_factor
        self.group_by_length = group_by_length
        self.epoch = 0
        self.iterated_epoch: int | None = None  # the epoch of the last pass handed out
        self._skip = 0  # batches the next pass leaves out (a resume mid-epoch)

    def set_epoch(self, epoch: int) -> None:
        """The epoch whose order the next pass yields (training/callbacks.py's BatchSamplerEpoch calls it:
        Lightning calls set_epoch on samplers only, never on batch samplers)."""
        self.epoch = epoch

    def skip_next(self, batches: int) -> None:
        """Leave the first `batches` batches out of the next pass only (they were trained before a resume);
        `len()` stays the epoch's, which is what Lightning counts a resumed epoch against."""
        self._skip = batches

    def global_batches(self) -> list[list[int]]:
        """All global batches of the current epoch (what a single process of `global_batch` would get)."""
        generator = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
        order = torch.randperm(len(self.lengths), generator=generator).tolist()
        batches: list[list[int]] = []
        for start in range(0, len(order), self.pool):
            pool = order[start : start + self.pool]
            if self.group_by_length:
                pool.sort(key=lambda i: self.lengths[i], reverse=True)
            batches += [pool[i : i + self.global_batch] for i in range(0, len(pool), self.global_batch)]
        shuffled = torch.randperm(len(batches), generator=generator).tolist()
        return [batches[i] for i in shuffled]

    def batches(self) -> list[list[int]]:
        """This rank's batches of the current epoch (all of them when not distributed)."""
        return [rank_slice(batch, self.rank, self.num_replicas) for batch in self.global_batches()]

    def __iter__(self) -> Iterator[list[int]]:
        self.iterated_epoch = self.epoch
        skip, self._skip = self._skip, 0
        return iter(self.batches()[skip:])

    def __len__(self) -> int:
        # pools are whole multiples of the global batch, so only the last pool can end in a short batch
        return sum(
            -(-min(self.pool, len(self.lengths) - start) // self.global_batch)
            for start in range(0, len(self.lengths), self.pool)
        )


def rank_slice(batch: list[int], rank: int, num_replicas: int) -> list[int]:
    """Rank `rank`'s contiguous share of a global batch; a short final batch is split as evenly as possible,
    and one with fewer items than ranks is topped up by repeating items, so no rank ever gets an empty batch
    (ranks must take the same number of steps or DDP hangs)."""
    if num_replicas == 1:
        return batch
    while len(batch) < num_replicas:
        batch = batch + batch[: num_replicas - len(batch)]
    size, extra = divmod(len(batch), num_replicas)
    start = rank * size + min(rank, extra)
    return batch[start : start + size + (rank < extra)]


def _process_group() -> tuple[int, int]:
    """(world size, rank) of the default process group, or (1, 0) outside distributed training."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_world_size(), torch.distributed.get_rank()
    return 1, 0


def eval_batches(lengths: Sequence[int], batch_size: int) -> list[list[int]]:
    """Deterministic evaluation batches: longest first, so similar lengths share a batch."""
    order = sorted(range(len(lengths)), key=lambda i: lengths[i], reverse=True)
    return [order[i : i + batch_size] for i in range(0, len(order), batch_size)]


class PadCollator:
    """Pad `input_ids` with `pad_id`, `labels` with -100, and build the attention mask; `side="left"` puts the
    padding first (generation: every row's next token is then at the last column)."""

    def __init__(self, pad_id: int, label_pad: int = -100, side: str = "right") -> None:
        self.pad_id = pad_id
        self.label_pad = label_pad
        self.side = side

    def __call__(self, items: list[dict]) -> dict[str, torch.Tensor]:
        width = max(len(item["input_ids"]) for item in items)
        batch = {
            "input_ids": torch.full((len(items), width), self.pad_id, dtype=torch.long),
            "attention_mask": torch.zeros((len(items), width), dtype=torch.long),
            "index": torch.tensor([item["index"] for item in items], dtype=torch.long),
        }
        has_labels = "labels" in items[0]
        if has_labels:
            batch["labels"] = torch.full((len(items), width), self.label_pad, dtype=torch.long)
        for row, item in enumerate(items):
            n = len(item["input_ids"])
            cols = slice(width - n, width) if self.side == "left" else slice(0, n)
            batch["input_ids"][row, cols] = torch.tensor(item["input_ids"])
            batch["attention_mask"][row, cols] = 1
            if has_labels:
                batch["labels"][row, cols] = torch.tensor(item["labels"])
        return batch


def keep_empty(examples: list, empty: Sequence[int], fraction: float, seed: int) -> list:
    """`examples` without a seeded random share `1 - fraction` of the entity-free ones (`empty`: their
    indices); order is kept."""
    if not 0.0 <= fraction <= 1.0:
        raise ValueError(f"empty_fraction must be in [0, 1], got {fraction}")
    if fraction == 1.0 or not empty:
        return examples
    dropped = set(random.Random(seed).sample(list(empty), len(empty) - round(fraction * len(empty))))
    return [example for index, example in enumerate(examples) if index not in dropped]

"""LightningDataModule for seq2seq: documents -> prompt units -> (prompt + answer) examples, the answer written
in the run's format (approaches/seq2seq/formats/).

Training batches are length-grouped and right-padded with labels -100 outside the answer; the dev batches
hold prompt indices only, because validation generates (model selection is on dev F1, not dev loss).
"""

from __future__ import annotations

import logging
import math
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import lightning as L
from torch.utils.data import DataLoader, Dataset

from clinical_ner.approaches.seq2seq.formats import AnswerFormat, answer_format
from clinical_ner.approaches.seq2seq.prompt import PromptRenderer
from clinical_ner.approaches.seq2seq.units import TextUnit, make_units, unit_spans
from clinical_ner.data.batching import LengthGroupedBatchSampler, PadCollator, eval_batches, keep_empty
from clinical_ner.data.types import Document
from clinical_ner.errors import UserError

log = logging.getLogger(__name__)


@dataclass
class PromptSplit:
    """A split's documents, their prompt units (in document and text order) and each unit's prompt ids."""

    docs: list[Document]
    units: list[TextUnit]
    prompts: list[list[int]]

    @property
    def lengths(self) -> list[int]:
        return [len(p) for p in self.prompts]


def prompt_split(docs: Sequence[Document], renderer: PromptRenderer, unit: str) -> PromptSplit:
    """Units as inference sees them: sentences are cut without looking at gold mentions."""
    units = [u for doc in docs for u in make_units(doc, unit)]
    return PromptSplit(list(docs), units, [renderer.prompt_ids(u.text) for u in units])


def training_examples(
    docs: Sequence[Document],
    renderer: PromptRenderer,
    unit: str,
    max_length: int,
    empty_fraction: float = 1.0,
    seed: int = 0,
    offset_loss: bool = True,
    answer: AnswerFormat | None = None,
) -> tuple[list[dict], int]:
    """(examples, lengths): `input_ids` + `labels` per unit (sentences never cut a gold mention), and the token
    length of every unit; examples longer than `max_length` are skipped rather than cut, since a cut answer
    teaches a broken answer (`check_lengths` counts them). `answer`: the format the answers are written in (JSON
    by default).

    `empty_fraction`: the share of units without any mention that is kept (a seeded sample; `seed` picks it).
    Most sentences hold no mention, and a small model trained on all of them learns to answer `[]` to everything.
    `offset_loss=False` leaves the digits of `start`/`end` out of the loss: a small model cannot count
    characters, and constrained decoding writes them itself (free decoding then relies on the parser's
    re-anchoring).
    """
    answer = answer or answer_format("json")
    examples, empty, lengths = [], [], []
    for doc in docs:
        for part in make_units(doc, unit, doc.spans):
            target = answer.target(part, doc.spans)
            input_ids, labels = renderer.example(part.text, target, answer.unlearned(target, offset_loss))
            lengths.append(len(input_ids))
            if len(input_ids) > max_length:
                continue
            if not unit_spans(part, doc.spans):
                empty.append(len(examples))
            examples.append({"input_ids": input_ids, "labels": labels})
    return keep_empty(examples, empty, empty_fraction, seed), lengths


def check_lengths(lengths: Sequence[int], max_length: int, share: float = 0.99) -> int:
    """The number of training examples longer than `max_length` (skipped); a warning when they are more than
    1 - `share` of them, a UserError when they are all of them (a run that trains on nothing)."""
    skipped = sum(length > max_length for length in lengths)
    if not skipped:
        return 0
    ordered = sorted(lengths)
    needed = ordered[max(0, math.ceil(share * len(ordered)) - 1)]
    summary = (
        f"{skipped} of {len(lengths)} seq2seq training examples are longer than approach.max_length={max_length} "
        f"tokens; approach.max_length={needed} keeps {share:.0%} of them"
    )
    if skipped == len(lengths):
        raise UserError(f"nothing to train on: {summary}")
    if skipped > (1 - share) * len(lengths):
        log.warning("%s (skipped examples bias training towards short units)", summary)
    else:
        log.info("%s", summary)
    return skipped


def selection_sample(docs: Sequence[Document], limit: int | None, seed: int = 0) -> list[Document]:
    """`limit` documents drawn (seeded) from the whole of `docs`, kept in their order; all when `limit` is
    None or not smaller. A sample spread over the split, not its first ids (one journal in PharmaCoNER)."""
    if limit is None or limit >= len(docs):
        return list(docs)
    chosen = set(random.Random(seed).sample(range(len(docs)), limit))
    return [doc for index, doc in enumerate(docs) if index in chosen]


class _Items(Dataset):
    def __init__(self, items: Sequence[dict]) -> None:
        self.items = items

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> dict:
        return {**self.items[index], "index": index}


def _indices(batch: list[dict]) -> list[int]:
    return [item["index"] for item in batch]


class Seq2SeqDataModule(L.LightningDataModule):
    """Training examples and the dev prompts generated at each validation (`val_limit` documents sampled
    over the dev set; None = all)."""

    def __init__(
        self,
        splits: Mapping[str, Sequence[Document]],
        renderer: PromptRenderer,
        unit: str,
        max_length: int,
        batch_size: int,
        eval_batch_size: int,
        seed: int,
        val_limit: int | None = None,
        mega_batch_factor: int = 100,
        group_by_length: bool = True,
        empty_fraction: float = 1.0,
        offset_loss: bool = True,
        answer: AnswerFormat | None = None,
    ) -> None:
        super().__init__()
        self.examples, lengths = training_examples(
            splits["train"], renderer, unit, max_length, empty_fraction, seed, offset_loss, answer
        )
        self.skipped = check_lengths(lengths, max_length)
        log.info(
            "%d training examples (entity-free units kept: %.0f%%)", len(self.examples), 100 * empty_fraction
        )
        # the same documents in every run (not the run seed), so selection scores compare across seeds
        self.val = prompt_split(selection_sample(splits["dev"], val_limit), renderer, unit)
        self.collate = PadCollator(renderer.tokenizer.pad_token_id)
        self.batch_size = batch_size
        self.eval_batch_size = eval_batch_size
        self.seed = seed
        self.mega_batch_factor = mega_batch_factor
        self.group_by_length = group_by_length

    def train_dataloader(self) -> DataLoader:
        sampler = LengthGroupedBatchSampler(
            [len(e["input_ids"]) for e in self.examples],
            self.batch_size,
            self.seed,
            self.mega_batch_factor,
            self.group_by_length,
        )
        return DataLoader(_Items(self.examples), batch_sampler=sampler, collate_fn=self.collate)

    def val_dataloader(self) -> DataLoader:
        """Batches of dev unit indices, longest prompts first; validation_step generates their answers."""
        items = [{"input_ids": p} for p in self.val.prompts]
        return DataLoader(
            _Items(items),
            batch_sampler=eval_batches(self.val.lengths, self.eval_batch_size),
            collate_fn=_indices,
        )

"""Token classification keeps a seeded share of mention-free training windows (`approach.empty_fraction`)."""

from __future__ import annotations

from clinical_ner.approaches.tokencls.datamodule import TokenClsDataModule, Windowing
from clinical_ner.approaches.tokencls.tagging import IGNORE, bio_labels
from clinical_ner.data.batching import Batching
from clinical_ner.data.synthetic import synthetic_splits
from clinical_ner.models.tokenizer import train_tokenizer


def _module(fraction: float, seed: int = 0) -> TokenClsDataModule:
    splits = synthetic_splits(n_train=60, n_dev=2, n_test=2)
    tokenizer = train_tokenizer("byte_level_bpe", 600, [d.text for d in splits["train"]])
    types = sorted({s.type for d in splits["train"] for s in d.spans})
    label2id = {label: i for i, label in enumerate(bio_labels(types))}
    return TokenClsDataModule(
        splits, tokenizer, label2id, Windowing("last", 64, 8, fraction), Batching(4, 4, seed)
    )


def _has_mention(window, outside: int) -> bool:
    return any(label not in (IGNORE, outside) for label in window.labels)


def test_every_mention_window_is_kept_and_a_seeded_share_of_the_others():
    full, half, other_seed = _module(1.0), _module(0.5), _module(0.5, seed=1)
    outside = 0  # "O" is the first BIO label
    windows = full.encoded["train"].windows
    mention = [w for w in windows if _has_mention(w, outside)]
    empty = [w for w in windows if not _has_mention(w, outside)]
    assert mention and len(empty) >= 4, "the synthetic corpus must have both kinds"
    assert full.train_windows == windows
    kept_empty = [w for w in half.train_windows if not _has_mention(w, outside)]
    assert [w for w in half.train_windows if _has_mention(w, outside)] == mention
    assert len(kept_empty) == round(0.5 * len(empty))
    assert kept_empty != [w for w in other_seed.train_windows if not _has_mention(w, outside)]
    assert sum(len(batch) for batch in half.train_sampler()) == len(half.train_windows)
    assert half.encoded["train"].windows == windows  # dev/test and the full split are untouched

"""What every stage of one run reads, loaded once per run: the NER corpus, its entity types, the tokenizers."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from transformers import PreTrainedTokenizerBase

from clinical_ner.cache.location import cache_dir
from clinical_ner.config import TrainConfig
from clinical_ner.data.ner_corpus import corpus_types, load_ner_splits
from clinical_ner.data.types import Document
from clinical_ner.models.factory import make_tokenizer


@dataclass
class RunInputs:
    """The corpus of a run (every document: limits are the fine-tuning stage's), its types and tokenizers."""

    cfg: TrainConfig
    cache: Path
    splits: dict[str, list[Document]]
    types: list[str]
    _tokenizers: dict[bool, PreTrainedTokenizerBase] = field(default_factory=dict, repr=False)

    @classmethod
    def load(cls, cfg: TrainConfig) -> RunInputs:
        """Read the configured corpus and its entity types (a corpus without mentions fails here)."""
        cache = cache_dir(cfg.cache_dir)
        splits = load_ner_splits(cfg.data, cache)
        return cls(cfg, cache, splits, corpus_types(cfg.data, splits))

    def tokenizer(self, instruct: bool = False) -> PreTrainedTokenizerBase:
        """The run's tokenizer, built on first use: at tiny scale one per family trained on all train + dev text
        (so limits or seeds never change it, and pretraining and fine-tuning share a vocabulary); at paper scale
        the checkpoint's own, the instruct checkpoint's when `instruct`."""
        key = instruct and bool(self.cfg.scale.pretrained)  # a tiny tokenizer has no instruct variant
        if key not in self._tokenizers:
            texts = [doc.text for doc in self.splits["train"] + self.splits["dev"]]
            self._tokenizers[key] = make_tokenizer(
                self.cfg.model, self.cfg.scale, texts, self.cache, instruct
            )
        return self._tokenizers[key]

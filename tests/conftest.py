"""Shared fixtures. Corpus tests skip locally without PHARMACONER_DIR (or CLINICAL_NER_CORPORA) but FAIL in CI
(CI=true)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
from composing import MICRO, compose_train

torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))


def _corpus_dir() -> Path | None:
    root = os.environ.get("PHARMACONER_DIR")
    if root and all((Path(root) / split).is_dir() for split in ("train", "dev", "test")):
        return Path(root)
    return None


@pytest.fixture(scope="session")
def pharmaconer_dir() -> Path:
    """The real PharmaCoNER corpus (folder with train/ dev/ test/), from PHARMACONER_DIR."""
    root = _corpus_dir()
    if root is None:
        message = "PharmaCoNER corpus not found: set PHARMACONER_DIR to a folder with train/ dev/ test/"
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(message)
        pytest.skip(message)
    return root


def _corpora_dir() -> Path | None:
    root = os.environ.get("CLINICAL_NER_CORPORA")
    if root and all((Path(root) / lang).is_dir() for lang in ("es", "en")):
        return Path(root)
    return None


@pytest.fixture(scope="session")
def corpora_dir() -> Path:
    """The continual-pretraining corpora (folder with es/ en/), from CLINICAL_NER_CORPORA."""
    root = _corpora_dir()
    if root is None:
        message = "pretraining corpora not found: set CLINICAL_NER_CORPORA to a folder with es/ and en/"
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(message)
        pytest.skip(message)
    return root


# a toy Llama's config: 2 layers of width 32, 4 heads over 2 key/value heads (tests override what they need)
TINY_LLAMA = {
    "vocab_size": 64,
    "hidden_size": 32,
    "intermediate_size": 64,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "pad_token_id": 0,
}


@pytest.fixture(scope="session")
def tiny_llama():
    """Factory `tiny_llama(model_class, seed=0, **config)`: a toy Llama of `model_class` (a transformers Llama
    class) with TINY_LLAMA's config updated by `config`, its weights drawn after `torch.manual_seed(seed)`."""
    from transformers import LlamaConfig

    def make(model_class, seed: int | None = 0, **config):
        if seed is not None:
            torch.manual_seed(seed)
        return model_class(LlamaConfig(**{**TINY_LLAMA, **config}))

    return make


@pytest.fixture(scope="session")
def compose():
    """`compose(overrides, hydra=False)`: conf/train.yaml with overrides, unchecked (tests/composing.py)."""
    return compose_train


@pytest.fixture(scope="session")
def micro() -> list[str]:
    """The shared micro-model overrides (tests/composing.py: MICRO)."""
    return list(MICRO)

"""Shared fixtures. Corpus tests skip locally without PHARMACONER_DIR (or CLINICAL_NER_CORPORA) but FAIL in CI
(CI=true)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

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

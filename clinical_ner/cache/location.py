"""Where cached artefacts (tokenizers, downloads, pretrained weights) live."""

from __future__ import annotations

import os
from pathlib import Path


def cache_dir(configured: str | None = None) -> Path:
    """`cache_dir` from config, else $CLINICAL_NER_CACHE, else ~/.cache/clinical_ner."""
    path = configured or os.environ.get("CLINICAL_NER_CACHE") or Path.home() / ".cache" / "clinical_ner"
    path = Path(path).expanduser()
    path.mkdir(parents=True, exist_ok=True)
    return path

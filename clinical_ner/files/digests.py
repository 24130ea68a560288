"""Digests: sha256 of a JSON-able value (cache keys, config hashes, run ids) and of a file's bytes."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any


def json_digest(material: Any) -> str:
    """Hex sha256 of `material` written as JSON with sorted keys (what JSON cannot write goes through `str`):
    the one digest behind cache keys, config hashes and run ids."""
    return hashlib.sha256(json.dumps(material, sort_keys=True, default=str).encode("utf-8")).hexdigest()


def file_digest(path: Path | str, algorithm: str = "sha256") -> str:
    """Hex digest of a file's bytes, streamed (corpus files, downloads and cached weights can be large)."""
    with open(path, "rb") as handle:
        return hashlib.file_digest(handle, algorithm).hexdigest()

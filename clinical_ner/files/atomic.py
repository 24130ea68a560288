"""Atomic file writes: a reader never sees a half-written output file."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

_DEFAULT_MODE = 0o644


def atomic_write_text(path: Path | str, text: str) -> None:
    """Write `text` (UTF-8, newlines untranslated) to `path` via a temp file in the same folder + os.replace."""
    path = Path(path)
    # Keep the mode of a file we replace; mkstemp would otherwise leave 0600.
    mode = path.stat().st_mode & 0o777 if path.exists() else _DEFAULT_MODE
    fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp_name, mode)
        os.replace(tmp_name, path)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise


def atomic_write_json(path: Path | str, obj: Any) -> None:
    """Write `obj` as indented JSON (key order kept, non-ASCII kept) atomically, with a trailing newline."""
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=False, ensure_ascii=False) + "\n")

"""What a cache entry's manifest promises about its files (size and sha256 of each), and the check of it.

Every cache that outlives a run (converted packaged weights, continually pretrained weights, tokenized corpora,
locally trained tokenizers) records `file_records` when it writes an entry and calls `broken_file` when it uses
one; an entry that fails (a full disk, a killed copy, a bad block) is rebuilt under its lock instead of ending
the run in a library traceback. A file's sha256 is computed once per process and (size, mtime) of the file:
hashing SmolLM2's 538 MB safetensors takes 1.2-2.0 s here, once per run.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path

from clinical_ner.files.digests import file_digest

_DIGESTS: dict[tuple[str, int, int], str] = {}  # (path, size, mtime_ns) -> sha256, for this process


def digest(path: Path) -> str:
    """The file's sha256, hashed once per process for the same size and modification time."""
    stat = path.stat()
    key = (str(path.resolve()), stat.st_size, stat.st_mtime_ns)
    if key not in _DIGESTS:
        _DIGESTS[key] = file_digest(path)
    return _DIGESTS[key]


def file_records(folder: Path, skip: Iterable[str] = ()) -> dict[str, dict]:
    """{relative path: {"size", "sha256"}} of every file below `folder` but the names in `skip`, sorted."""
    skipped = set(skip)
    return {
        path.relative_to(folder).as_posix(): {"size": path.stat().st_size, "sha256": digest(path)}
        for path in sorted(Path(folder).rglob("*"))
        if path.is_file() and path.name not in skipped
    }


def broken_file(folder: Path, records: Mapping[str, Mapping]) -> str | None:
    """The first recorded file that is missing, of another size or of another sha256 (with why), else None."""
    for relative, expected in records.items():
        path = Path(folder) / relative
        if not path.is_file():
            return f"{relative} is missing"
        size = path.stat().st_size
        if size != expected["size"]:
            return f"{relative} has {size} bytes, not {expected['size']}"
        if digest(path) != expected["sha256"]:
            return f"{relative} has another sha256"
    return None

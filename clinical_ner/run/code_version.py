"""Which code computed a run: a digest of the package's Python files and its configs (README, docs and test
edits do not count), to tell whether a committed result still stands for the current code.

results.json records it as `code.hash` (beside the commit and dirty flag); `package_hash` is the one
definition, so the record and the skip of committed cells (clinical_ner/run/committed.py) agree.
"""

from __future__ import annotations

import hashlib
from functools import cache
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent
CONF = PACKAGE.parent / "conf"
# what a run's numbers depend on: the code and the configs it composes
PATTERNS = ((PACKAGE, "*.py"), (CONF, "*.yaml"))


def hashed_files() -> list[tuple[str, Path]]:
    """(name relative to the repository root, path) of every file the hash covers, sorted by name."""
    root = PACKAGE.parent
    found = {
        path.relative_to(root).as_posix(): path
        for folder, pattern in PATTERNS
        for path in folder.rglob(pattern)
        if path.is_file() and "__pycache__" not in path.parts
    }
    return sorted(found.items())


@cache
def package_hash() -> str:
    """sha256 over each covered file's name and bytes (16 hex digits): same files, same hash, on any machine."""
    digest = hashlib.sha256()
    for name, path in hashed_files():
        data = path.read_bytes()
        digest.update(f"{name}\0{len(data)}\0".encode())
        digest.update(data)
    return digest.hexdigest()[:16]

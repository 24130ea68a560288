"""Which code computed a run: a hash of the package's source and its configs, with the git commit beside it.

Only `clinical_ner/**/*.py` and `conf/**/*.yaml` count, so README, docs or test edits leave the hash alone;
results.json records it under `code` and reruns never reuse a cell of another hash unless asked
(`sweep.reuse_other_code=true`, clinical_ner/run/sweep.py).
"""

from __future__ import annotations

import functools
import hashlib
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]  # the checkout: clinical_ner/run/record/ -> root
HASHED = (("clinical_ner", "*.py"), ("conf", "*.yaml"))


def hashed_files(root: Path = ROOT) -> list[Path]:
    """The files the code hash covers, relative to `root`, sorted (byte caches excluded)."""
    files = {
        path.relative_to(root)
        for folder, pattern in HASHED
        for path in (root / folder).rglob(pattern)
        if "__pycache__" not in path.parts and path.is_file()
    }
    return sorted(files, key=lambda p: p.as_posix())


def code_hash(root: Path = ROOT) -> str:
    """sha256 (hex) over each hashed file's relative path and bytes."""
    digest = hashlib.sha256()
    for relative in hashed_files(root):
        digest.update(relative.as_posix().encode() + b"\0")
        digest.update((root / relative).read_bytes() + b"\0")
    return digest.hexdigest()


def _git(root: Path, *args: str) -> str | None:
    try:
        done = subprocess.run(["git", *args], cwd=root, capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return None  # no git, or a hung one: the hash still identifies the code
    return done.stdout if done.returncode == 0 else None


def git_state(root: Path = ROOT) -> tuple[str | None, bool | None]:
    """(commit, dirty): HEAD and whether the hashed folders differ from it (untracked files included);
    (None, None) outside a git checkout."""
    commit = _git(root, "rev-parse", "HEAD")
    if commit is None:
        return None, None
    status = _git(root, "status", "--porcelain", "--", *(folder for folder, _ in HASHED))
    return commit.strip(), None if status is None else bool(status.strip())


@functools.cache
def code_version() -> dict:
    """`{"hash", "commit", "dirty"}` of the code this process runs (computed once per process)."""
    commit, dirty = git_state()
    return {"hash": code_hash(), "commit": commit, "dirty": dirty}

"""The on-disk cache of continually pretrained weights: one entry per key, verified by a manifest written last.

An entry is `<cache>/pretrained/<name>/` holding `epoch-<n>/` folders (save_pretrained) and `manifest.json`
(key material, size + sha256 of every file, the stage's metrics). The manifest is written after everything
else, so an entry killed mid-write has none and is rebuilt; a truncated or altered file fails its size or hash
and the entry is rebuilt too. A file lock beside the entry makes concurrent jobs needing the same weights wait
for the one that trains them.
"""

from __future__ import annotations

import json
import logging
import shutil
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from filelock import FileLock, Timeout

from clinical_ner.cache.manifest import broken_file, file_records
from clinical_ner.files.atomic import atomic_write_json
from clinical_ner.files.digests import json_digest

log = logging.getLogger(__name__)

MANIFEST = "manifest.json"
FORMAT_VERSION = 1


class PretrainedEntry:
    """One cache entry: where it lives, its lock, its manifest."""

    def __init__(self, cache: Path, name: str, material: dict[str, Any]) -> None:
        self.material = material
        self.digest = json_digest(material)
        self.folder = Path(cache) / "pretrained" / f"{name}-{self.digest[:16]}"

    def epoch_folder(self, epoch: int) -> Path:
        """The save_pretrained folder of the weights after `epoch` (1-based)."""
        return self.folder / f"epoch-{epoch}"

    @contextmanager
    def locked(self):
        """Hold the entry's file lock; say so when another job holds it (it is training these weights)."""
        self.folder.parent.mkdir(parents=True, exist_ok=True)
        lock = FileLock(str(self.folder) + ".lock")
        try:
            lock.acquire(timeout=0)
        except Timeout:
            log.info("waiting for another job pretraining the same weights (%s)", self.folder.name)
            lock.acquire()
        try:
            yield
        finally:
            lock.release()

    def read_manifest(self) -> dict | None:
        """The manifest if the entry is complete and intact, else None (with the reason logged)."""
        path = self.folder / MANIFEST
        if not path.is_file():
            if self.folder.exists():
                log.warning(
                    "pretrained cache entry %s has no manifest (interrupted?): rebuilding", self.folder
                )
            return None
        try:
            manifest = json.loads(path.read_text(encoding="utf-8"))
            files = manifest["files"]
        except (json.JSONDecodeError, KeyError, TypeError) as err:
            log.warning("pretrained cache entry %s: unreadable manifest (%s): rebuilding", self.folder, err)
            return None
        if manifest.get("format") != FORMAT_VERSION or manifest.get("digest") != self.digest:
            log.warning(
                "pretrained cache entry %s: manifest of another format or key: rebuilding", self.folder
            )
            return None
        why = broken_file(self.folder, files)
        if why is not None:
            log.warning("pretrained cache entry %s: %s: rebuilding", self.folder, why)
            return None
        return manifest

    def clear(self) -> None:
        """Remove a partial or corrupt entry before training into it again."""
        shutil.rmtree(self.folder, ignore_errors=True)
        self.folder.mkdir(parents=True)

    def write_manifest(self, epochs: int, metrics: dict[str, Any]) -> dict:
        """Record every file's size and sha256, then the manifest itself (atomically, last)."""
        missing = [e for e in range(1, epochs + 1) if not self.epoch_folder(e).is_dir()]
        if missing:
            raise RuntimeError(f"pretraining produced no weights for epoch(s) {missing} in {self.folder}")
        files = file_records(self.folder, skip=[MANIFEST])
        manifest = {
            "format": FORMAT_VERSION,
            "digest": self.digest,
            "key": self.material,
            "epochs": epochs,
            "files": files,
            "metrics": metrics,
        }
        atomic_write_json(self.folder / MANIFEST, manifest)
        return manifest

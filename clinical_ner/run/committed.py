"""Cells already committed to the repository (`committed_dir`, e.g. results/real_weights/ for
`experiment=study`): a sweep skips a cell whose committed results.json is complete, of the same config and of
the same code version (`code.hash` = the current `code_version()`), so a study can be run over several sittings
and from a fresh clone without redoing what is in the repository. Cells of older code are redone (their
committed file is replaced only when the new results are exported)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from clinical_ner.config.compare import same_config
from clinical_ner.run.record.code_version import code_version
from clinical_ner.run.record.folder import RESULTS_FILE


def committed_path(committed_dir: Path, sweep_dir: Path, run_dir: Path) -> Path | None:
    """Where the cell of `run_dir` lies under `committed_dir`: the same path below the sweep folder
    (`<approach>/<cell>/results.json`); None when `run_dir` is not inside `sweep_dir`."""
    try:
        relative = Path(run_dir).resolve().relative_to(Path(sweep_dir).resolve())
    except ValueError:
        return None
    return Path(committed_dir) / relative / RESULTS_FILE


def recorded_hash(results: dict[str, Any]) -> str | None:
    """The code hash a results.json records (None for records from before it was written)."""
    code = results.get("code")
    value = code.get("hash") if isinstance(code, dict) else None
    return value if isinstance(value, str) else None


def committed_results(path: Path | None, config: dict[str, Any]) -> dict[str, Any] | None:
    """The committed results at `path` when they are complete, of this config and of the current code."""
    if path is None or not path.is_file():
        return None
    try:
        results = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(results, dict) or results.get("status") != "complete" or "test" not in results:
        return None
    if not same_config(results.get("config", {}), config):
        return None
    return results if recorded_hash(results) == code_version()["hash"] else None

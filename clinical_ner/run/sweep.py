"""Sweep cells that survive failures and reruns: skip finished cells, resume interrupted ones, report the rest.

A named experiment's sweep folder is stable (conf/experiment/*.yaml), so rerunning the same `-m` command finds
every cell's folder again: a cell whose `results.json` is complete for the same config is skipped, one with
`checkpoints/last.ckpt` written by the same config (`checkpoints.json` holds its hash) resumes from it, and
anything else (failed, never started) is redone. A folder whose results or checkpoints come from another config
(or from an unknown one) is moved aside into `stale-<time>/` first, with one line saying why, so a new config
never resumes, or reports, an old run; the tables skip `stale-*` folders.

The code counts like the config: a cell whose results (`code.hash`) or checkpoints (`checkpoints.json`) come
from another code version (clinical_ner/run/record/code_version.py) is moved aside and redone, so a rerun after a code change
never pools old cells with new ones; `sweep.reuse_other_code=true` keeps and reuses them (one line says so).
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any

from hydra.core.hydra_config import HydraConfig
from hydra.experimental.callback import Callback
from hydra.types import RunMode
from omegaconf import DictConfig

from clinical_ner.config.compare import (
    changed_keys,
    comparable,
    config_hash,
    flatten,
    recorded_comparable,
    same_config,
    show_value,
)
from clinical_ner.files.atomic import atomic_write_json
from clinical_ner.run.record.code_version import code_version
from clinical_ner.run.record.folder import HYDRA_ENTRIES, STALE_PREFIX, WANDB_DIR, RunFolder

log = logging.getLogger(__name__)


def in_multirun() -> bool:
    """True inside a `-m` sweep job (a failing cell must then not end the sweep)."""
    return HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _code_hash(record: dict[str, Any] | None) -> str | None:
    code = (record or {}).get("code")
    return code.get("hash") if isinstance(code, dict) else None


def _short(digest: str | None) -> str:
    return "unknown" if digest is None else digest[:12]


def finished_results(
    run_dir: Path, config: dict[str, Any], reuse_other_code: bool = False
) -> dict[str, Any] | None:
    """The cell's results when they are complete and were computed with this config by this code (by any
    code with `reuse_other_code`, saying so in one line), else None."""
    results = _read_json(RunFolder(run_dir).results)
    if results is None or results.get("status") != "complete" or "test" not in results:
        return None
    if not same_config(results.get("config", {}), config):
        return None
    recorded, current = _code_hash(results), code_version()["hash"]
    if recorded == current:
        return results
    if not reuse_other_code:
        return None
    log.warning(
        "reuse: %s was computed by code %s, not this code %s (sweep.reuse_other_code=true)",
        run_dir, _short(recorded), _short(current),
    )  # fmt: skip
    return results


def resume_checkpoint(run_dir: Path, config: dict[str, Any], reuse_other_code: bool = False) -> Path | None:
    """The last checkpoint an interrupted cell left behind, when it was written by this config and this code
    (any code with `reuse_other_code`)."""
    path = RunFolder(run_dir).last_checkpoint
    record = _read_json(RunFolder(run_dir).checkpoint_config) or {}
    if not path.is_file() or record.get("config_hash") != config_hash(config):
        return None
    return path if reuse_other_code or record.get("code_hash") == code_version()["hash"] else None


def record_checkpoint_config(run_dir: Path, config: dict[str, Any]) -> None:
    """Say which config and code the checkpoints about to be written belong to (before training starts)."""
    folder = RunFolder(run_dir)
    folder.root.mkdir(parents=True, exist_ok=True)
    record = {"config_hash": config_hash(config), "code_hash": code_version()["hash"]}
    atomic_write_json(folder.checkpoint_config, record)


def _describe_changes(old: dict[str, Any], new: dict[str, Any], most: int = 3) -> str:
    """ "optim.lr 0.001 -> 0.002, ..." for the first `most` changed keys."""
    a, b = flatten(recorded_comparable(old, new)), flatten(comparable(new))
    keys = changed_keys(a, b)
    shown = [f"{key} {show_value(a.get(key))} -> {show_value(b.get(key))}" for key in keys[:most]]
    more = f" and {len(keys) - most} more" if len(keys) > most else ""
    return ", ".join(shown) + more


def stale_reason(run_dir: Path, config: dict[str, Any], reuse_other_code: bool = False) -> str | None:
    """Why what the folder holds belongs to another run (results or checkpoints of another config or another
    code version, or checkpoints of an unknown one); None when nothing in it contradicts `config` and this
    code (`reuse_other_code`: the code is not asked about)."""
    folder = RunFolder(run_dir)
    current = code_version()["hash"]
    results = _read_json(folder.results)
    if results is not None and isinstance(results.get("config"), dict):
        old = results["config"]
        status = results.get("status", "?")
        if not same_config(old, config):
            return f"its {status} results are of another config ({_describe_changes(old, config)})"
        recorded = _code_hash(results)
        if recorded != current and not reuse_other_code:
            return (
                f"its {status} results are of another code version ({_short(recorded)} -> {_short(current)};"
                " sweep.reuse_other_code=true keeps them)"
            )
    if folder.checkpoints.is_dir() and any(folder.checkpoints.iterdir()):
        record = _read_json(folder.checkpoint_config)
        if record is None or record.get("config_hash") is None:
            return "its checkpoints were written by an unknown config (no record of it)"
        if record["config_hash"] != config_hash(config):
            return "its checkpoints were written by another config"
        if record.get("code_hash") != current and not reuse_other_code:
            return f"its checkpoints were written by another code version ({_short(record.get('code_hash'))})"
    return None


def move_aside(run_dir: Path) -> Path:
    """Move the folder's contents into `<run>/stale-<time>/`, keeping Hydra's files of the job now starting
    (`.hydra/`, its log) and earlier stale folders; returns the new folder."""
    folder = RunFolder(run_dir)
    stamp = time.strftime("%Y-%m-%d_%H-%M-%S")
    target, n = folder.stale(stamp), 1
    while target.exists():
        n += 1
        target = folder.stale(f"{stamp}-{n}")
    target.mkdir()
    for entry in sorted(folder.root.iterdir()):
        if entry.name in HYDRA_ENTRIES or entry.name.startswith(STALE_PREFIX):
            continue
        entry.rename(target / entry.name)
    return target


def prepare_run_dir(
    run_dir: Path, config: dict[str, Any], writer: bool = True, reuse_other_code: bool = False
) -> Path | None:
    """Before a run trains in `run_dir`: move what another config (or code version) left there aside (the
    `writer`, rank 0, does; it says why in one line) and return the checkpoint to resume from, if one of this
    config exists."""
    reason = stale_reason(run_dir, config, reuse_other_code)
    if reason is not None:
        if not writer:
            return None  # rank 0 moves it; this rank starts from scratch like rank 0
        target = move_aside(run_dir)
        log.warning(
            "rerun: %s: %s; moved its files to %s/, training from scratch", run_dir, reason, target.name
        )
        return None
    return resume_checkpoint(run_dir, config, reuse_other_code)


def summarize(sweep_dir: Path, committed_dir: Path | None = None) -> dict[str, list[Path]]:
    """Cell folders of a sweep by status: complete, failed, unfinished (no results.json), and, with
    `committed_dir`, committed (no results.json here, a complete one at the same path there: skipped)."""
    cells: dict[str, list[Path]] = {"complete": [], "failed": [], "unfinished": []}
    for config in sorted(Path(sweep_dir).rglob(".hydra/config.yaml")):
        cell = config.parent.parent
        status = _status(RunFolder(cell).results)
        if status == "unfinished" and committed_dir is not None:
            there = Path(committed_dir) / cell.relative_to(sweep_dir) / RunFolder(cell).results.name
            status = "committed" if _status(there) == "complete" else status
        cells.setdefault(status, []).append(cell)
    return cells


def _status(results: Path) -> str:
    try:
        return json.loads(results.read_text()).get("status", "unfinished")
    except (OSError, ValueError):
        return "unfinished"


def wandb_sync_hint(folder: Path) -> str | None:
    """The command that uploads the offline W&B runs under `folder`, when there are any."""
    runs = sorted(Path(folder).rglob(f"{WANDB_DIR}/offline-run-*"))
    # one glob per folder depth, e.g. multirun/paper_grid/*/*/wandb/offline-run-*
    depths = sorted({len(run.relative_to(folder).parts) - 2 for run in runs})
    globs = [str(Path(folder, *["*"] * depth, WANDB_DIR, "offline-run-*")) for depth in depths]
    return f"wandb sync {' '.join(globs)}" if globs else None


class SweepSummary(Callback):
    """At the end of a sweep: how many cells completed or failed (with their errors), and the W&B command."""

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        sweep_dir = Path(config.hydra.sweep.dir)
        committed = config.get("committed_dir")
        cells = summarize(sweep_dir, None if committed is None else Path(committed))
        skipped = f", {len(cells['committed'])} committed (skipped)" if cells.get("committed") else ""
        print(
            f"sweep {sweep_dir}: {len(cells['complete'])} complete, {len(cells['failed'])} failed, "
            f"{len(cells['unfinished'])} unfinished{skipped}"
        )
        for cell in cells["failed"]:
            error = json.loads(RunFolder(cell).results.read_text()).get("error", "?")
            print(f"  failed: {cell.relative_to(sweep_dir)}: {error}")
        hint = wandb_sync_hint(sweep_dir)
        if hint:
            print(f"W&B runs are offline; upload them with: {hint}")

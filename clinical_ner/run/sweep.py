"""Sweep cells that survive failures and reruns: skip finished cells, resume interrupted ones, report the rest.

A named experiment's sweep folder is stable (conf/experiment/*.yaml), so rerunning the same `-m` command finds
every cell's folder again: a cell whose `results.json` is complete for the same config is skipped, one with
`checkpoints/last.ckpt` resumes from it, and anything else (failed, never started) is redone.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from hydra.core.hydra_config import HydraConfig
from hydra.experimental.callback import Callback
from hydra.types import RunMode
from omegaconf import DictConfig

from clinical_ner.run_folder import WANDB_DIR, RunFolder

log = logging.getLogger(__name__)
# keys that change how a run is watched, not what it computes: a rerun that differs only here still skips
_NOT_RESULTS = ("output_dir", "cache_dir", "ckpt_path", "logger")
_NOT_RESULTS_TRAINER = ("enable_progress_bar", "threads", "log_every_n_steps")


def in_multirun() -> bool:
    """True inside a `-m` sweep job (a failing cell must then not end the sweep)."""
    return HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN


def comparable_config(config: dict[str, Any], approach_keys: set[str] | None = None) -> dict[str, Any]:
    """A resolved config less what changes how a run is watched (logger, progress, paths, resume point)."""
    kept = {k: v for k, v in config.items() if k not in _NOT_RESULTS}
    trainer = {k: v for k, v in kept.get("trainer", {}).items() if k not in _NOT_RESULTS_TRAINER}
    comparable = {**kept, "trainer": trainer}
    if approach_keys is not None and isinstance(kept.get("approach"), dict):
        # records written before each approach had its own schema also hold the other approach's (unused)
        # settings: only the keys this approach has can have changed its results
        comparable["approach"] = {k: v for k, v in kept["approach"].items() if k in approach_keys}
    return comparable


def finished_results(run_dir: Path, config: dict[str, Any]) -> dict[str, Any] | None:
    """The cell's results when they are complete and were computed with this config, else None."""
    path = RunFolder(run_dir).results
    try:
        results = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    if results.get("status") != "complete" or "test" not in results:
        return None
    if comparable_config(results.get("config", {}), set(config.get("approach", {}))) != comparable_config(
        config
    ):
        log.warning("%s: complete, but for another config; running the cell again", path)
        return None
    return results


def resume_checkpoint(run_dir: Path) -> Path | None:
    """The last checkpoint an interrupted cell left behind, if any."""
    path = RunFolder(run_dir).last_checkpoint
    return path if path.is_file() else None


def summarize(sweep_dir: Path) -> dict[str, list[Path]]:
    """Cell folders of a sweep by status: complete, failed, unfinished (no results.json)."""
    cells: dict[str, list[Path]] = {"complete": [], "failed": [], "unfinished": []}
    for config in sorted(Path(sweep_dir).rglob(".hydra/config.yaml")):
        cell = config.parent.parent
        try:
            status = json.loads(RunFolder(cell).results.read_text()).get("status", "unfinished")
        except (OSError, ValueError):
            status = "unfinished"
        cells.setdefault(status, []).append(cell)
    return cells


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
        cells = summarize(sweep_dir)
        print(
            f"sweep {sweep_dir}: {len(cells['complete'])} complete, {len(cells['failed'])} failed, "
            f"{len(cells['unfinished'])} unfinished"
        )
        for cell in cells["failed"]:
            error = json.loads(RunFolder(cell).results.read_text()).get("error", "?")
            print(f"  failed: {cell.relative_to(sweep_dir)}: {error}")
        hint = wandb_sync_hint(sweep_dir)
        if hint:
            print(f"W&B runs are offline; upload them with: {hint}")

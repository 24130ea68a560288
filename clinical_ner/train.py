"""Hydra entry point: `python -m clinical_ner.train approach=tokencls model=llama2 corpus=none`.

Composes the config (validated against clinical_ner/config/schema.py), runs the stages, and writes `results.json`
in the run folder, `status: failed` with the error line when something goes wrong.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, open_dict

from clinical_ner.config import public_config
from clinical_ner.console import progress
from clinical_ner.distributed.launch import run_job as run_on_devices
from clinical_ner.run.committed import committed_path, committed_results
from clinical_ner.run.pipeline import run
from clinical_ner.run.record.results import write_results
from clinical_ner.run.sweep import (
    finished_results,
    in_multirun,
    prepare_run_dir,
    record_checkpoint_config,
    wandb_sync_hint,
)
from clinical_ner.run.task import Cell, task_wrapper
from clinical_ner.training.rank_zero import is_global_zero

log = logging.getLogger(__name__)
CONF_DIR = str(Path(__file__).resolve().parent.parent / "conf")


def objective(results: dict) -> float | None:
    """What a job returns to Hydra, and so what a tuning sweeper maximises: dev F1 (never test F1)."""
    return results.get("dev", {}).get("f1")


def _committed(cfg: DictConfig, run_dir: Path) -> Path | None:
    """Where a sweep cell's committed results would lie (`committed_dir`), None outside a sweep or without it."""
    if cfg.committed_dir is None or not in_multirun():
        return None
    return committed_path(Path(cfg.committed_dir), Path(HydraConfig.get().sweep.dir), run_dir)


@hydra.main(config_path=CONF_DIR, config_name="train", version_base="1.3")
def main(cfg: DictConfig) -> float | None:
    """Run one job and return its dev F1: skip it when complete, else resume or start it, run, write.

    Inside a sweep, a cell already complete is skipped and an interrupted one resumes from its last checkpoint
    when that was written by the same config; another config's leftovers are moved aside first
    (clinical_ner/run/sweep.py). A failure is recorded and ends the job with one line (clinical_ner/run/task.py).
    """
    run_dir = Path(cfg.output_dir)
    progress.quiet_libraries(cfg.trainer.enable_progress_bar)
    config = public_config(cfg)
    done = finished_results(run_dir, config, bool(cfg.sweep.reuse_other_code))
    if done is not None:
        print(f"skip: {run_dir} is complete (test F1 {done['test'].get('f1', 0):.4f})")
        return objective(done)
    committed = _committed(cfg, run_dir)
    done = committed_results(committed, config)
    if done is not None:
        print(f"skip: {run_dir} is committed in {committed} (test F1 {done['test'].get('f1', 0):.4f})")
        return objective(done)
    resume(cfg)
    results = run_job(cfg)
    if results is None or not is_global_zero():  # a failed sweep cell, or a rank > 0
        return None
    path = write_results(run_dir, results)
    test = results.get("test", {})
    log.info(
        "test F1 %.4f (P %.4f R %.4f) -> %s",
        test.get("f1", 0),
        test.get("precision", 0),
        test.get("recall", 0),
        path,
    )
    print(f"results: {path}")
    hint = wandb_sync_hint(run_dir)
    if hint and not in_multirun():
        print(f"W&B run is offline; upload it with: {hint}")
    return objective(results)


def resume(cfg: DictConfig) -> None:
    """Point `ckpt_path` at this config's last checkpoint in the run folder, if any, and record the config
    that writes its checkpoints. Another config's results or checkpoints are moved aside; an explicit
    `ckpt_path` (e.g. `last` with more steps) is the user's choice: the folder is left as it is."""
    run_dir, config = Path(cfg.output_dir), public_config(cfg)
    # one job, one run folder: rank 0 writes it; other ranks run on scratch folders (clinical_ner/distributed/launch.py)
    rank_zero = is_global_zero()
    reuse = bool(cfg.sweep.reuse_other_code)  # another code version's checkpoint resumes only when asked
    last = prepare_run_dir(run_dir, config, rank_zero, reuse) if cfg.ckpt_path is None else None
    if last is not None:
        log.info("resuming %s from %s", run_dir, last)
        with open_dict(cfg):
            cfg.ckpt_path = str(last)
    if rank_zero:
        record_checkpoint_config(run_dir, config)


@task_wrapper
def run_job(cell: Cell) -> dict:
    """Check the config, run the stages on the devices it asks for; the phases are timed into the cell."""
    return run_on_devices(cell.cfg, cell.times, run)  # `run` read here, so tests can stand in for the stages


if __name__ == "__main__":
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    main()

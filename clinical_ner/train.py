"""Hydra entry point: `python -m clinical_ner.train approach=tokencls model=llama2 corpus=none`.

Composes the config (validated against clinical_ner/config.py), runs the stages, and writes `results.json`
in the run folder, `status: failed` with the error line when something goes wrong.
"""

from __future__ import annotations

import logging
import os
import sys
from contextlib import suppress
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, open_dict

from clinical_ner import progress
from clinical_ner.code_version import code_version
from clinical_ner.config import public_config
from clinical_ner.errors import EXIT_USER_ERROR, UserError, disk_full, no_space_line
from clinical_ner.results import write_results
from clinical_ner.run import ranks
from clinical_ner.run.committed import committed_path, committed_results
from clinical_ner.run.pipeline import coordinates, run
from clinical_ner.run.sweep import (
    finished_results,
    in_multirun,
    prepare_run_dir,
    record_checkpoint_config,
    wandb_sync_hint,
)
from clinical_ner.training.timings import PhaseTimes

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
    """Run one job and return its dev F1; a user mistake ends it with one line and exit code 2, never a
    traceback.

    Inside a sweep, a failing cell is recorded (`status: failed`) and the sweep goes on; a cell already
    complete is skipped and an interrupted one resumes from its last checkpoint when that was written by the
    same config; another config's leftovers are moved aside first (clinical_ner/run/sweep.py).
    """
    run_dir = Path(cfg.output_dir)
    progress.quiet_libraries(cfg.trainer.enable_progress_bar)
    config = public_config(cfg)
    reuse = bool(cfg.sweep.reuse_other_code)
    done = finished_results(run_dir, config, reuse)
    if done is not None:
        print(f"skip: {run_dir} is complete (test F1 {done['test'].get('f1', 0):.4f})")
        return objective(done)
    committed = _committed(cfg, run_dir)
    done = committed_results(committed, config)
    if done is not None:
        print(f"skip: {run_dir} is committed in {committed} (test F1 {done['test'].get('f1', 0):.4f})")
        return objective(done)
    # one job, one run folder: rank 0 writes it; other ranks run on scratch folders (clinical_ner/run/ranks.py)
    rank_zero = ranks.is_global_zero()
    # another config's results or checkpoints are moved aside; only this config's last checkpoint resumes.
    # An explicit ckpt_path (e.g. `last` with more steps) is the user's choice: the folder is left as it is.
    last = prepare_run_dir(run_dir, config, rank_zero, reuse) if cfg.ckpt_path is None else None
    if last is not None:
        log.info("resuming %s from %s", run_dir, last)
        with open_dict(cfg):
            cfg.ckpt_path = str(last)
    if rank_zero:
        record_checkpoint_config(run_dir, config)

    times = PhaseTimes()  # the phases a failed run got through are recorded too

    def record_failure(error: str) -> None:
        if rank_zero:
            record = {"status": "failed", "error": error, **coordinates(cfg), "code": code_version()}
            record["timings"] = times.as_dict()
            write_results(run_dir, record)

    try:
        with ranks.job(cfg, on_failure=record_failure) as rank_cfg:  # checks, starts the other ranks
            results = run(rank_cfg, times)
    except UserError as err:
        record_failure(str(err))
        print(f"error: {err}", file=sys.stderr)
        if in_multirun():
            return None
        sys.exit(EXIT_USER_ERROR)
    except ranks.RankFailed as err:
        # rank 0's own traceback says nothing (it was interrupted); the dead rank's log says why
        error = f"RankFailed: {err or 'a rank > 0 died'}"
        record_failure(error)
        print(f"error: {run_dir}: {error}", file=sys.stderr)
        if in_multirun():
            return None
        sys.exit(1)
    except Exception as err:
        full = disk_full(err)
        if full is not None:
            # the machine, not the cell: one line, and a sweep stops here (every next cell would fail alike)
            error = no_space_line(full)
            with suppress(OSError):
                record_failure(error)
            print(
                f"error: {run_dir}: {error}; free disk space (run folders, $CLINICAL_NER_CACHE, /tmp) and run the"
                " same command again: it resumes from the last checkpoint",
                file=sys.stderr,
            )
            sys.exit(1)
        error = f"{type(err).__name__}: {err}"
        record_failure(error)
        if not in_multirun():
            raise
        log.exception("cell failed")  # the traceback goes to this cell's log; the sweep goes on
        print(f"error: {run_dir}: {error}", file=sys.stderr)
        return None
    if not rank_zero:
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


if __name__ == "__main__":
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    main()

"""Experiment loggers: W&B (offline by default), CSV, or none."""

from __future__ import annotations

import os
from pathlib import Path

from lightning.pytorch.loggers import CSVLogger, Logger, WandbLogger

from clinical_ner.config import TrainConfig
from clinical_ner.errors import UserError


def run_name(cfg: TrainConfig) -> str:
    """A readable name: approach-model-corpus-scale-seed."""
    return f"{cfg.approach.name}-{cfg.model.family}-{cfg.corpus.name}-{cfg.scale.name}-s{cfg.seed}"


def make_logger(cfg: TrainConfig, run_dir: Path) -> Logger | None:
    """The configured logger; W&B writes its files under the run dir and stays offline unless asked."""
    name = cfg.logger.name
    if name == "none":
        return None
    if name == "csv":
        return CSVLogger(save_dir=str(run_dir), name="csv", version="")
    if name == "wandb":
        wandb = cfg.logger.wandb
        mode = wandb.mode or os.environ.get("WANDB_MODE") or "offline"
        return WandbLogger(
            project=wandb.project,
            entity=wandb.entity,
            name=run_name(cfg),
            group=wandb.group,
            job_type=cfg.approach.name,
            tags=[
                cfg.model.family,
                cfg.corpus.name,
                cfg.approach.name,
                cfg.scale.name,
                f"seed{cfg.seed}",
                *wandb.tags,
            ],
            save_dir=str(run_dir),
            mode=mode,
        )
    raise UserError(f"unknown logger '{name}' (expected wandb, csv or none)")


def finish_logger(logger: Logger | None, exit_code: int = 0) -> None:
    """Close a W&B run (marked failed when exit_code != 0) so it never stays 'running'."""
    if isinstance(logger, WandbLogger) and logger._experiment is not None:
        logger.experiment.finish(exit_code=exit_code)

"""One run: optional continual pretraining, then the configured fine-tuning stage; returns the results record.

Called by the Hydra entry point (clinical_ner/train.py) in rank 0 and by every other rank of a multi-device job
(clinical_ner/run/ranks.py).
"""

from __future__ import annotations

from pathlib import Path

import lightning as L
import torch
from omegaconf import DictConfig

from clinical_ner.config import public_config
from clinical_ner.errors import UserError
from clinical_ner.training.timings import PhaseTimes, recording


def run(cfg: DictConfig, times: PhaseTimes | None = None) -> dict:
    """Run the configured approach and return the full results record; its phases' seconds go to `times`
    (a new recorder when None) and into the record's `timings`."""
    with recording(times) as times:
        record = _run(cfg)
    return {**record, "timings": times.as_dict()}


def _run(cfg: DictConfig) -> dict:
    run_dir = Path(cfg.output_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    if cfg.trainer.threads:
        torch.set_num_threads(cfg.trainer.threads)
    if cfg.approach.name not in ("tokencls", "seq2seq"):
        raise UserError(f"unknown approach={cfg.approach.name}; expected tokencls or seq2seq")
    pretrain, init_from = None, None
    if cfg.corpus.name != "none":
        from clinical_ner.pretrain.stage import run_pretrain

        outcome = run_pretrain(cfg, run_dir)
        pretrain, init_from = outcome.section, outcome.weights
    # seeded after pretraining, so fine-tuning is the same whether the weights were trained or cached
    L.seed_everything(cfg.seed, workers=True, verbose=False)
    if cfg.approach.name == "seq2seq":
        from clinical_ner.approaches.seq2seq.stage import run_seq2seq as run_stage
    else:
        from clinical_ner.approaches.tokencls.stage import run_tokencls as run_stage
    sections = run_stage(cfg, run_dir, init_from=init_from)
    return {"status": "complete", **coordinates(cfg), **sections, "pretrain": pretrain}


def coordinates(cfg: DictConfig) -> dict:
    """Where a run sits in the grid, plus its resolved config."""
    return {
        "approach": cfg.approach.name,
        "model": cfg.model.family,
        "corpus": cfg.corpus.name,
        "scale": cfg.scale.name,
        "seed": cfg.seed,
        "config": public_config(cfg),
    }

"""One run: load the inputs once, optional continual pretraining, then the approach's fine-tuning stage (from the
registry); returns the results record.

Called by the Hydra entry point (clinical_ner/train.py) in rank 0 and by every other rank of a multi-device job
(clinical_ner/run/ranks.py).
"""

from __future__ import annotations

from pathlib import Path

import lightning as L
import torch
from omegaconf import DictConfig

from clinical_ner.config import check_config, public_config
from clinical_ner.models.backbone import weights_record
from clinical_ner.pretrain.stage import run_pretrain
from clinical_ner.run.registry import stage_class
from clinical_ner.training.inputs import RunInputs
from clinical_ner.training.stage import run_stage
from clinical_ner.training.timings import PhaseTimes, phase, recording


def run(cfg: DictConfig, times: PhaseTimes | None = None) -> dict:
    """Run the configured approach and return the full results record; its phases' seconds go to `times`
    (a new recorder when None) and into the record's `timings`."""
    with recording(times) as times:
        record = _run(cfg)
    return {**record, "timings": times.as_dict()}


def _run(cfg: DictConfig) -> dict:
    check_config(cfg)
    run_dir = Path(cfg.output_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    if cfg.trainer.threads:
        torch.set_num_threads(cfg.trainer.threads)
    stage = stage_class(cfg.approach.name)
    with phase("load_corpus"):
        inputs = RunInputs.load(cfg)  # corpus, types and tokenizer, once for both stages
    pretrain, init_from = None, None
    if cfg.corpus.name != "none":
        outcome = run_pretrain(cfg, run_dir, inputs)
        pretrain, init_from = outcome.section, outcome.weights
    # seeded after pretraining, so fine-tuning is the same whether the weights were trained or cached
    L.seed_everything(cfg.seed, workers=True, verbose=False)
    sections = run_stage(cfg, run_dir, stage, inputs, init_from)
    weights = weights_record(cfg.model, instruct=stage.instruct(cfg)) if cfg.scale.pretrained else None
    return {"status": "complete", **coordinates(cfg), **sections, "pretrain": pretrain, "weights": weights}


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

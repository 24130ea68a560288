"""One run: load the inputs once, optional continual pretraining, then the approach's fine-tuning stage (from the
registry); returns the results record.

Called by the Hydra entry point (clinical_ner/train.py) in rank 0 and by every other rank of a multi-device job
(clinical_ner/run/ranks.py).
"""

from __future__ import annotations

import logging
from pathlib import Path

import lightning as L
import torch
from omegaconf import DictConfig

from clinical_ner.config import check_config, public_config
from clinical_ner.config_compare import comparable
from clinical_ner.io_utils import json_digest
from clinical_ner.models.backbone import weights_record
from clinical_ner.planning.setup import micro_batch_for
from clinical_ner.pretrain.stage import run_pretrain
from clinical_ner.run.registry import stage_class
from clinical_ner.training.inputs import RunInputs
from clinical_ner.training.loggers import make_logger, opened, report_to_wandb, use_reference_artifact
from clinical_ner.training.rank_zero import is_global_zero
from clinical_ner.training.stage import run_stage
from clinical_ner.training.timings import PhaseTimes, phase, recording

log = logging.getLogger(__name__)


def run(cfg: DictConfig, times: PhaseTimes | None = None) -> dict:
    """Run the configured approach and return the full results record; its phases' seconds go to `times`
    (a new recorder when None) and into the record's `timings`."""
    with recording(times) as times:
        record = _run(cfg, times)
    return {**record, "timings": times.as_dict()}


def _run(cfg: DictConfig, times: PhaseTimes) -> dict:
    """The record less `timings`. The cell's logger is made once, after pretraining (which logs into a run of
    its own), and finished here, as failed when a stage raises."""
    check_config(cfg)
    run_dir = Path(cfg.output_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    if cfg.trainer.threads:
        torch.set_num_threads(cfg.trainer.threads)
    stage = stage_class(cfg.approach.name)
    with phase("load_corpus"):
        inputs = RunInputs.load(cfg)  # corpus, types and tokenizer, once for both stages
    outcome = run_pretrain(cfg, run_dir, inputs) if cfg.corpus.name != "none" else None
    # seeded after pretraining, so fine-tuning is the same whether the weights were trained or cached
    L.seed_everything(cfg.seed, workers=True, verbose=False)
    with opened(make_logger(cfg, run_dir, cell_run_id(cfg, run_dir))) as logger:
        if outcome is not None:
            use_reference_artifact(logger, outcome.artifact)
        init_from = outcome.weights if outcome is not None else None
        fit_micro_batch(cfg)
        sections = run_stage(cfg, run_dir, stage, inputs, init_from, logger)
        if sections:  # ranks > 0 return nothing
            sections["train"]["micro_batch"] = int(cfg.data.batch_size)
            sections["train"]["accumulate_grad_batches"] = int(cfg.trainer.accumulate_grad_batches)
        weights = weights_record(cfg.model, instruct=stage.instruct(cfg)) if cfg.scale.pretrained else None
        pretrain = outcome.section if outcome is not None else None
        results = {
            "status": "complete",
            **coordinates(cfg),
            **sections,
            "pretrain": pretrain,
            "weights": weights,
        }
        if is_global_zero():
            report_to_wandb(logger, {**results, "timings": times.as_dict()}, run_dir, cfg.logger.log_text)
    return results


def fit_micro_batch(cfg: DictConfig) -> None:
    """On CUDA with `trainer.auto_micro_batch`, train the recipe's effective batch in the largest micro-batch the
    memory plan fits (planning.setup.micro_batch_for); one log line when that changes `cfg`. CPU runs, debug runs
    and `auto_micro_batch=false` keep the recipe's split."""
    t = cfg.trainer
    cuda = t.accelerator in ("auto", "gpu", "cuda") and torch.cuda.is_available()
    if not (t.auto_micro_batch and cuda and not t.fast_dev_run):
        return
    memory = torch.cuda.get_device_properties(torch.cuda.current_device()).total_memory
    micro, accumulate = micro_batch_for(cfg, memory)
    if (micro, accumulate) != (cfg.data.batch_size, t.accumulate_grad_batches):
        log.info(
            "micro-batch %d x %d accumulation (recipe %d x %d; same effective batch, fits %.0f GiB)",
            micro, accumulate, cfg.data.batch_size, t.accumulate_grad_batches, memory / 2**30,
        )  # fmt: skip
        cfg.data.batch_size, t.accumulate_grad_batches = micro, accumulate


def cell_run_id(cfg: DictConfig, run_dir: Path) -> str:
    """The cell's W&B run id: the same for every attempt at the same folder and config (a resume changes
    only `ckpt_path`, which the comparison ignores), another one for another config."""
    material = {"run_dir": str(Path(run_dir).resolve()), "config": comparable(public_config(cfg))}
    return f"{cfg.approach.name}-{json_digest(material)[:16]}"


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

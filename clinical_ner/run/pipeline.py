"""One run: load the inputs once, optional continual pretraining, then the approach's fine-tuning stage (from the
registry); returns the results record.

Called by the Hydra entry point (clinical_ner/train.py) in rank 0 and by every other rank of a multi-device job
(clinical_ner/distributed/).
"""

from __future__ import annotations

import copy
import logging
import platform
from contextlib import suppress
from pathlib import Path

import lightning as L
import torch
from omegaconf import DictConfig

from clinical_ner.config import check_config, public_config
from clinical_ner.config.compare import comparable
from clinical_ner.files.digests import json_digest
from clinical_ner.models.weights import weights_record
from clinical_ner.planning.auto_precision import as_asked, resolve_precision
from clinical_ner.planning.probe import GemmProbe, train_flops_per_token
from clinical_ner.planning.setup import arch_of, micro_batch_for
from clinical_ner.pretrain.stage import run_pretrain
from clinical_ner.run.record.code_version import code_version
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
    with recording(times) as times, as_asked(cfg):
        record = _run(cfg, times)
    # the config as asked (`precision: auto` stays auto, so a sweep finds the cell again); train.precision ran
    return {**record, "config": public_config(cfg), "timings": times.as_dict()}


def _run(cfg: DictConfig, times: PhaseTimes) -> dict:
    """The record less `timings`. The cell's logger is made once, after pretraining (which logs into a run of
    its own), and finished here, as failed when a stage raises."""
    check_config(cfg)
    run_dir = Path(cfg.output_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    if cfg.trainer.threads:
        torch.set_num_threads(cfg.trainer.threads)
    run_id = cell_run_id(cfg, run_dir)  # of the config as asked (`auto` included): one W&B run on any CPU
    probe = resolve_precision(cfg)  # `precision: auto` becomes bf16-mixed or 32-true here
    stage = stage_class(cfg.approach.name)
    with phase("load_corpus"):
        inputs = RunInputs.load(cfg)  # corpus, types and tokenizer, once for both stages
    outcome = run_pretrain(cfg, run_dir, inputs) if cfg.corpus.name != "none" else None
    # seeded after pretraining, so fine-tuning is the same whether the weights were trained or cached
    L.seed_everything(cfg.seed, workers=True, verbose=False)
    with opened(make_logger(cfg, run_dir, run_id)) as logger:
        if outcome is not None:
            use_reference_artifact(logger, outcome.artifact)
        init_from = outcome.weights if outcome is not None else None
        asked = coordinates(cfg)  # the config the user asked for: a rerun must judge the cell by it
        micro, accumulate = fit_micro_batch(cfg)
        trained = with_micro_batch(cfg, micro, accumulate)
        sections = run_stage(trained, run_dir, stage, inputs, init_from, logger)
        if sections:  # ranks > 0 return nothing
            sections["train"]["micro_batch"] = micro
            sections["train"]["accumulate_grad_batches"] = accumulate
            sections["train"].update(gemm_section(trained, probe, sections["train"]))
        weights = weights_record(cfg.model, instruct=stage.instruct(cfg)) if cfg.scale.pretrained else None
        pretrain = outcome.section if outcome is not None else None
        results = {
            "status": "complete",
            **asked,
            **sections,
            "pretrain": pretrain,
            "weights": weights,
            "code": code_version(),
            "machine": machine_record(),
        }
        if is_global_zero():
            record = {**results, "timings": times.as_dict()}
            report_to_wandb(logger, record, run_dir, cfg.logger.log_text, gold=inputs.splits["test"])
    return results


def gemm_section(cfg: DictConfig, probe: GemmProbe | None, train: dict) -> dict:
    """results.json `train.precision`, `train.gemm` (the run-start CPU probe; null on a GPU) and
    `train.gemm_fraction`: steady-state training FLOP/s (decoder matmuls) over the probed rate of the precision
    trained in."""
    precision = str(cfg.trainer.precision)
    if probe is None:
        return {"precision": precision, "gemm": None, "gemm_fraction": None}
    arch = arch_of(cfg)
    flops = train_flops_per_token(
        arch.hidden,
        arch.intermediate,
        arch.heads,
        arch.kv_heads,
        arch.layers,
        cfg.approach.finetune == "full",
    )
    # the tokens the decoder really ran (a shared prompt prefix runs once per batch, not once per row)
    rate = (train["tokens_per_s_steady"] or train["tokens_per_s"]) * train.get("decoder_token_share", 1.0)
    limit = probe.tflops(precision)
    fraction = rate * flops / (limit * 1e12) if limit else None
    return {
        "precision": precision,
        "gemm": {**probe.as_dict(), "chosen": probe.precision},
        "gemm_fraction": fraction,
    }


def cuda_memory(cfg: DictConfig) -> int | None:
    """The CUDA device's total memory in bytes when this run trains on one, else None."""
    cuda = cfg.trainer.accelerator in ("auto", "gpu", "cuda") and torch.cuda.is_available()
    if not cuda:
        return None
    return torch.cuda.get_device_properties(torch.cuda.current_device()).total_memory


def fit_micro_batch(cfg: DictConfig) -> tuple[int, int]:
    """(micro-batch, accumulation) to train with: on CUDA with `trainer.auto_micro_batch`, the recipe's
    effective batch in the largest micro-batch the memory plan fits (planning.setup.micro_batch_for; one log
    line when that differs from the recipe). CPU runs, debug runs and `auto_micro_batch=false` keep the
    recipe's split. `cfg` is left as the user asked (results.json records that, the choice goes to `train`)."""
    t = cfg.trainer
    recipe = (int(cfg.data.batch_size), int(t.accumulate_grad_batches))
    memory = cuda_memory(cfg) if t.auto_micro_batch and not t.fast_dev_run else None
    if memory is None:
        return recipe
    micro, accumulate = micro_batch_for(cfg, memory)
    if (micro, accumulate) != recipe:
        log.info(
            "micro-batch %d x %d accumulation (recipe %d x %d; same effective batch, fits %.0f GiB)",
            micro, accumulate, *recipe, memory / 2**30,
        )  # fmt: skip
    return int(micro), int(accumulate)


def with_micro_batch(cfg: DictConfig, micro: int, accumulate: int) -> DictConfig:
    """`cfg` itself when the split is the recipe's, else a copy that trains with the chosen split."""
    if (micro, accumulate) == (cfg.data.batch_size, cfg.trainer.accumulate_grad_batches):
        return cfg
    trained = copy.deepcopy(cfg)
    trained.data.batch_size, trained.trainer.accumulate_grad_batches = micro, accumulate
    return trained


def machine_record() -> dict:
    """The CPU and kernels this run computed with: bf16 results differ across CPUs (README, "Same seed")."""
    cpu = platform.processor() or platform.machine()
    with suppress(OSError):
        names = [
            line for line in Path("/proc/cpuinfo").read_text().splitlines() if line.startswith("model name")
        ]
        cpu = names[0].split(":", 1)[1].strip() if names else cpu
    return {
        "cpu": cpu,
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),  # the ATen kernels in use (AVX2, AVX512, ...)
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "cuda": torch.cuda.get_device_name() if torch.cuda.is_available() else None,
    }


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

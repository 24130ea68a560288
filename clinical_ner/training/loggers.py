"""Experiment loggers: W&B (offline by default), CSV, or none."""

from __future__ import annotations

import os
from pathlib import Path

from lightning.pytorch.loggers import CSVLogger, Logger, WandbLogger

from clinical_ner.config import TrainConfig, public_config
from clinical_ner.errors import UserError
from clinical_ner.run_folder import CSV_DIR, RunFolder


def run_name(cfg: TrainConfig) -> str:
    """A readable name: approach-model-corpus-scale-seed."""
    return f"{cfg.approach.name}-{cfg.model.family}-{cfg.corpus.name}-{cfg.scale.name}-s{cfg.seed}"


def make_logger(cfg: TrainConfig, run_dir: Path) -> Logger | None:
    """The configured logger; W&B writes its files under the run dir and stays offline unless asked."""
    name = cfg.logger.name
    if name == "none":
        return None
    if name == "csv":
        return CSVLogger(save_dir=str(run_dir), name=CSV_DIR, version="")
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
            config=public_config(cfg),
        )
    raise UserError(f"unknown logger '{name}' (expected wandb, csv or none)")


def finish_logger(logger: Logger | None, exit_code: int = 0) -> None:
    """Close a W&B run (marked failed when exit_code != 0) so it never stays 'running'."""
    if isinstance(logger, WandbLogger) and logger._experiment is not None:
        logger.experiment.finish(exit_code=exit_code)


def finish_wandb(exit_code: int) -> None:
    """Finish the process's active W&B run, if any: every job of a sweep ends its run, even on error."""
    import wandb

    if wandb.run is not None:
        wandb.finish(exit_code=exit_code)


def _scalars(section: dict, prefix: str) -> dict[str, float]:
    """The numbers of a results section, flattened one level (`test/f1`, `test/per_type/PROTEINAS/f1`)."""
    flat: dict[str, float] = {}
    for key, value in section.items():
        if isinstance(value, bool | int | float):
            flat[f"{prefix}/{key}"] = float(value)
        elif key == "per_type" and isinstance(value, dict):
            for label, counts in value.items():
                flat[f"{prefix}/per_type/{label}/f1"] = float(counts["f1"])
    return flat


def report_to_wandb(results: dict, run_dir: Path, log_text: bool = False) -> None:
    """Final metrics into the active W&B run's summary, and the test predictions as tables of counts and spans:
    document ids, types and offsets only; the mention text only when `logger.log_text=true`."""
    import wandb

    from clinical_ner.metrics.span_scorer import parse_official_ann

    if wandb.run is None:
        return
    summary: dict[str, float] = {}
    for section in ("dev", "selection", "test", "train", "inference", "pretrain", "timings"):
        if isinstance(results.get(section), dict):
            summary.update(_scalars(results[section], section))
    wandb.run.summary.update(summary)
    counts = results.get("test", {}).get("per_document", {})
    documents = wandb.Table(columns=["document", "tp", "fp", "fn"], data=[[d, *c] for d, c in counts.items()])
    columns = ["document", "type", "start", "end", *(["text"] if log_text else [])]
    spans = wandb.Table(columns=columns)
    for path in sorted(RunFolder(run_dir).predictions("test").glob("*.ann")):
        texts = _mention_texts(path) if log_text else {}
        for label, start, end in sorted(parse_official_ann(path), key=lambda t: (t[1], t[2])):
            spans.add_data(path.stem, label, start, end, *([texts.get((start, end), "")] if log_text else []))
    wandb.log({"test/documents": documents, "test/spans": spans})


def _mention_texts(path: Path) -> dict[tuple[int, int], str]:
    """(start, end) -> mention text of a BRAT file's T lines (only read when the user opted in to text)."""
    found = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        fields = line.split("\t")
        if line.startswith("T") and len(fields) == 3 and len(fields[1].split()) == 3:
            _, start, end = fields[1].split()
            found[(int(start), int(end))] = fields[2]
    return found

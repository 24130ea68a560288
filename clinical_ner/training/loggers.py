"""Experiment loggers: W&B (offline by default), CSV, or none.

W&B conventions (tests/e2e/test_wandb.py):
- A cell's run id comes from its run folder and its config (clinical_ner/run/pipeline.py:`cell_run_id`), with
  `resume="allow"`: a cell resumed from its checkpoint, or a failed cell run again, continues the same W&B run
  (offline, each attempt is a folder `offline-run-<time>-<id>` of that one run; `wandb sync` joins them).
- Pretraining logs into a run of its own (`job_type="pretrain"`, id from the weight-cache key) and records the
  cached weights as a reference artifact (`file://`, nothing uploaded); a cell fine-tuned from them declares
  the artifact as its input (`use_artifact`, online; W&B cannot use artifacts offline, so an offline cell
  records the artifact's name and key digest in its config instead).
- `opened(logger)` starts a run when its stage starts and finishes it once, as failed when the stage raises.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from lightning.pytorch.loggers import CSVLogger, Logger, WandbLogger
from lightning.pytorch.utilities import rank_zero_only

from clinical_ner.config import TrainConfig, public_config
from clinical_ner.errors import UserError
from clinical_ner.run.record.folder import CSV_DIR, CSV_PRETRAIN_DIR, RunFolder


@dataclass(frozen=True)
class ReferenceArtifact:
    """Files W&B should know by reference (a `file://` folder), named `name`, versioned by `digest`;
    `metadata`: what the files depend on (the pretraining run's config, the artifact's metadata)."""

    name: str
    folder: Path
    digest: str
    metadata: dict = field(default_factory=dict)


def run_name(cfg: TrainConfig) -> str:
    """A readable name: approach-model-corpus-scale-seed."""
    return f"{cfg.approach.name}-{cfg.model.family}-{cfg.corpus.name}-{cfg.scale.name}-s{cfg.seed}"


def _wandb(cfg: TrainConfig, run_dir: Path, run_id: str, name: str, job_type: str, tags: list[str], config):
    wandb = cfg.logger.wandb
    return WandbLogger(
        project=wandb.project,
        entity=wandb.entity,
        id=run_id,
        resume="allow",
        name=name,
        group=wandb.group,
        job_type=job_type,
        tags=[*tags, *wandb.tags],
        save_dir=str(run_dir),
        mode=wandb.mode or os.environ.get("WANDB_MODE") or "offline",
        config=config,
    )


def make_logger(cfg: TrainConfig, run_dir: Path, run_id: str | None = None) -> Logger | None:
    """The cell's logger (fine-tuning, scores, predictions); W&B writes under the run dir, offline unless
    asked, into the run `run_id` (resumed when it exists)."""
    name = cfg.logger.name
    if name == "none":
        return None
    if name == "csv":
        return CSVLogger(save_dir=str(run_dir), name=CSV_DIR, version="")
    if name == "wandb":
        tags = [cfg.model.family, cfg.corpus.name, cfg.approach.name, cfg.scale.name, f"seed{cfg.seed}"]
        return _wandb(cfg, run_dir, run_id, run_name(cfg), cfg.approach.name, tags, public_config(cfg))
    raise UserError(f"unknown logger '{name}' (expected wandb, csv or none)")


def make_pretrain_logger(cfg: TrainConfig, run_dir: Path, weights: ReferenceArtifact) -> Logger | None:
    """The pretraining's logger: its own CSV folder, or its own W&B run (job type `pretrain`, id from the
    weights' key digest, configured with what the weights depend on)."""
    if cfg.logger.name == "csv":
        return CSVLogger(save_dir=str(run_dir), name=CSV_PRETRAIN_DIR, version="")
    if cfg.logger.name != "wandb":
        return make_logger(cfg, run_dir)
    tags = [cfg.model.family, cfg.corpus.name, "pretrain", cfg.scale.name]
    run_id = f"pretrain-{weights.digest[:16]}"
    return _wandb(cfg, run_dir, run_id, weights.name, "pretrain", tags, weights.metadata)


@contextmanager
def opened(logger: Logger | None) -> Iterator[Logger | None]:
    """Start the logger's W&B run now and finish it when the block ends: exit code 1 when it raises (the
    run is then `failed` until a resumed attempt finishes it)."""
    _wandb_run(logger)  # starts the run: its id, config and tags exist from the first second
    try:
        yield logger
    except BaseException:
        _finish(logger, exit_code=1)
        raise
    _finish(logger, exit_code=0)


def _wandb_run(logger: Logger | None):
    """The logger's W&B run on the rank that writes it (rank 0); None for another logger or another rank."""
    if not isinstance(logger, WandbLogger) or rank_zero_only.rank > 0:
        return None
    return logger.experiment


def _finish(logger: Logger | None, exit_code: int) -> None:
    run = _wandb_run(logger)
    if run is not None:
        run.finish(exit_code=exit_code)


def _artifact(reference: ReferenceArtifact):
    import wandb

    metadata = {"key_digest": reference.digest, **reference.metadata}
    artifact = wandb.Artifact(reference.name, type="model", metadata=metadata)
    # lineage without uploading (or hashing) the files; the folder name holds the key digest
    artifact.add_reference(reference.folder.as_uri(), checksum=False)
    return artifact


def log_reference_artifact(logger: Logger | None, reference: ReferenceArtifact) -> None:
    """Record the files as the run's output artifact (W&B only)."""
    run = _wandb_run(logger)
    if run is not None:
        run.log_artifact(_artifact(reference))


def use_reference_artifact(logger: Logger | None, reference: ReferenceArtifact) -> None:
    """Declare the files as the run's input (W&B only; offline: the artifact's name in the config)."""
    run = _wandb_run(logger)
    if run is None:
        return
    if run.offline:
        used = {"name": reference.name, "key_digest": reference.digest, "uri": reference.folder.as_uri()}
        run.config.update({"pretrained_artifact": used}, allow_val_change=True)
    else:
        run.use_artifact(_artifact(reference))


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


def report_to_wandb(
    logger: Logger | None, results: dict, run_dir: Path, log_text: bool = False, gold: list | None = None
) -> None:
    """Final metrics into the cell's W&B run summary, and the test predictions as tables of counts and spans:
    document ids, types and offsets only; the mention text only when `logger.log_text=true`. With the `gold`
    test documents, the error categories' counts (`test/errors/<category>/<tp|fp|fn>`) join the summary; their
    mentions with text (`test/errors` table) only with `log_text`. Nothing unless the logger is W&B's."""
    run = _wandb_run(logger)
    if run is None:
        return
    import wandb

    from clinical_ner.metrics.span_scorer import parse_official_ann

    summary: dict[str, float] = {}
    for section in ("dev", "selection", "test", "train", "inference", "pretrain", "timings"):
        if isinstance(results.get(section), dict):
            summary.update(_scalars(results[section], section))
    counts = results.get("test", {}).get("per_document", {})
    documents = wandb.Table(columns=["document", "tp", "fp", "fn"], data=[[d, *c] for d, c in counts.items()])
    columns = ["document", "type", "start", "end", *(["text"] if log_text else [])]
    spans = wandb.Table(columns=columns)
    predicted = {}
    for path in sorted(RunFolder(run_dir).predictions("test").glob("*.ann")):
        texts = _mention_texts(path) if log_text else {}
        predicted[path.stem] = parse_official_ann(path)
        for label, start, end in sorted(predicted[path.stem], key=lambda t: (t[1], t[2])):
            spans.add_data(path.stem, label, start, end, *([texts.get((start, end), "")] if log_text else []))
    tables = {"test/documents": documents, "test/spans": spans}
    if gold is not None:
        rule = results.get("test", {}).get("rule", "codalab")
        errors, table = _error_categories(gold, predicted, rule, log_text)
        summary.update(errors)
        if table is not None:
            tables["test/errors"] = table
    run.summary.update(summary)
    run.log(tables)


def _error_categories(gold: list, predicted: dict, rule: str, log_text: bool):
    """(category counts for the summary, the categorised mentions with their text or None unless `log_text`)."""
    import wandb

    from clinical_ner.metrics.error_categories import category_counts, classify, flat_counts

    texts = {doc.id: doc.text for doc in gold}
    triples = {doc.id: {(s.type, s.start, s.end) for s in doc.spans} for doc in gold}
    outcomes = classify(triples, predicted, rule)
    counts = flat_counts(category_counts(outcomes), "test/errors")
    if not log_text:
        return counts, None
    table = wandb.Table(columns=["document", "category", "side", "type", "start", "end", "text"])
    for doc_id, mentions in outcomes.items():
        for o in mentions:
            table.add_data(doc_id, o.category, o.side, o.type, o.start, o.end, texts[doc_id][o.start : o.end])
    return counts, table


def _mention_texts(path: Path) -> dict[tuple[int, int], str]:
    """(start, end) -> mention text of a BRAT file's T lines (only read when the user opted in to text)."""
    found = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        fields = line.split("\t")
        if line.startswith("T") and len(fields) == 3 and len(fields[1].split()) == 3:
            _, start, end = fields[1].split()
            found[(int(start), int(end))] = fields[2]
    return found

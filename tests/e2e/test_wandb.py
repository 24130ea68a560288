"""W&B conventions, checked on real offline runs: one run per cell across attempts (deterministic id,
`resume="allow"`), pretraining in a run of its own (job type `pretrain`) that records the cached weights as a
reference artifact, cells that declare those weights as their input, and nothing logged to W&B unless W&B is
the logger."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import pytest
from composing import compose_train
from lightning.pytorch.loggers import CSVLogger, WandbLogger

import clinical_ner.training.stage as training_stage
from clinical_ner.run.pipeline import cell_run_id, run
from clinical_ner.training.loggers import (
    ReferenceArtifact,
    opened,
    report_to_wandb,
    use_reference_artifact,
)

CONF = Path(__file__).resolve().parents[2] / "conf"
SMALL = [
    "data=synthetic",
    "logger=wandb",
    "trainer.enable_progress_bar=false",
    "trainer.threads=1",
    "data.eval_limit=2",
    "scale.hidden_size=32",
    "scale.intermediate_size=64",
    "scale.num_layers=1",
    "scale.num_heads=2",
    "scale.vocab_size=400",
]


@pytest.fixture(autouse=True)
def offline(monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.delenv("WANDB_API_KEY", raising=False)


def records(path: Path):
    """The protobuf records of an offline run's `.wandb` file (a LevelDB-style log of 32 KiB blocks, each
    record split into chunks with a 7-byte header: crc32c, length, type full/first/middle/last)."""
    from wandb.proto import wandb_internal_pb2

    data = path.read_bytes()
    assert data[:4] == b":W&B"
    position, pending = 7, b""
    while position + 7 <= len(data):
        left = 32768 - position % 32768
        _, length, kind = struct.unpack("<IHB", data[position : position + 7])
        if left < 7 or (length == 0 and kind == 0):  # block trailer or padding
            position += left
            continue
        pending += data[position + 7 : position + 7 + length]
        position += 7 + length
        if kind in (1, 4):  # a full record, or the last chunk of one
            record = wandb_internal_pb2.Record()
            record.ParseFromString(pending)
            pending = b""
            yield record


def offline_runs(run_dir: Path) -> list[dict]:
    """Each offline run folder under `run_dir/wandb`: run id, job type, config, artifacts and exit code."""
    import wandb

    wandb.teardown()  # a finished run's records reach its file when the W&B service flushes them
    found = []
    for folder in sorted((run_dir / "wandb").glob("offline-run-*")):
        (file,) = folder.glob("run-*.wandb")
        info: dict = {"folder": folder.name, "config": {}, "artifacts": [], "exit_code": None}
        for record in records(file):
            kind = record.WhichOneof("record_type")
            if kind in ("run", "config"):
                body = record.run if kind == "run" else record.config
                if kind == "run":
                    info["id"], info["job_type"] = record.run.run_id, record.run.job_type
                items = body.config.update if kind == "run" else body.update
                info["config"].update({item.key: json.loads(item.value_json) for item in items})
            elif kind == "artifact":
                refs = [entry.ref for entry in record.artifact.manifest.contents]
                info["artifacts"].append((record.artifact.name, record.artifact.type, refs))
            elif kind == "exit":
                info["exit_code"] = record.exit.exit_code
        found.append(info)
    return found


def compose_cell(run_dir: Path, cache: Path, *overrides: str):
    return compose_train([*SMALL, f"output_dir={run_dir}", f"cache_dir={cache}", *overrides])


@pytest.mark.slow
def test_failed_then_resumed_cell_is_one_wandb_run(tmp_path, monkeypatch):
    run_dir, cache = tmp_path / "cell", tmp_path / "cache"
    cfg = compose_cell(run_dir, cache, "trainer.max_steps=3")

    def crash(*args, **kwargs):
        raise RuntimeError("disk full")

    # the first attempt dies after training (its last checkpoint is on disk), like a killed cell
    with monkeypatch.context() as patch:
        patch.setattr(training_stage, "write_predictions", crash)
        with pytest.raises(RuntimeError, match="disk full"):
            run(cfg)
    assert (run_dir / "checkpoints" / "last.ckpt").is_file()
    # run again as the sweep does: same config, resuming from the last checkpoint
    resumed = compose_cell(
        run_dir, cache, "trainer.max_steps=3", f"ckpt_path={run_dir}/checkpoints/last.ckpt"
    )
    assert run(resumed)["status"] == "complete"

    attempts = offline_runs(run_dir)
    assert len(attempts) == 2  # one folder per attempt ...
    assert {a["id"] for a in attempts} == {cell_run_id(cfg, run_dir)}  # ... of one W&B run
    assert cell_run_id(resumed, run_dir) == cell_run_id(cfg, run_dir)  # the resume point is not identity
    assert sorted(a["exit_code"] for a in attempts) == [0, 1]  # failed, then finished by the resumed attempt
    assert {a["job_type"] for a in attempts} == {"tokencls"}
    # another config in the same folder is another run
    assert cell_run_id(compose_cell(run_dir, cache, "seed=7"), run_dir) != cell_run_id(cfg, run_dir)
    assert cell_run_id(cfg, tmp_path / "elsewhere") != cell_run_id(cfg, run_dir)


@pytest.mark.slow
def test_pretraining_is_its_own_run_and_cells_use_its_weights(tmp_path):
    from test_pretrain import write_corpora

    corpora, cache = write_corpora(tmp_path / "corpora"), tmp_path / "cache"
    pretrain = [
        "corpus=es",
        f"corpus.root={corpora}",
        "pretrain.block_size=32",
        "pretrain.batch_size=4",
        "pretrain.max_tokens=512",
        "pretrain.eval_max_tokens=128",
        "pretrain.trainer.max_epochs=1",
        "pretrain.use_epoch=1",
        "trainer.max_steps=1",
    ]
    first, second = tmp_path / "first", tmp_path / "second"
    assert run(compose_cell(first, cache, *pretrain))["pretrain"]["cache_hit"] is False
    assert run(compose_cell(second, cache, *pretrain, "seed=7"))["pretrain"]["cache_hit"] is True

    (pretraining,) = [r for r in offline_runs(first) if r["job_type"] == "pretrain"]
    assert pretraining["id"].startswith("pretrain-") and pretraining["exit_code"] == 0
    (entry,) = (cache / "pretrained").glob("llama2-es-tiny-*[!k]")  # the entry folder, not its .lock
    ((name, kind, refs),) = pretraining["artifacts"]
    assert name == "pretrained-llama2-es-tiny" and kind == "model"
    assert refs and all(ref.startswith(entry.as_uri() + "/") for ref in refs)  # a reference: no upload
    assert any(ref.endswith("/epoch-1/model.safetensors") for ref in refs)
    assert {"base", "tokenizer", "corpus", "pretrain"} <= set(pretraining["config"])  # what the weights need
    assert "trainer" not in pretraining["config"] and "approach" not in pretraining["config"]

    cells = [r for folder in (first, second) for r in offline_runs(folder) if r["job_type"] == "tokencls"]
    assert len(cells) == 2 and [r for r in offline_runs(second) if r["job_type"] == "pretrain"] == []
    used = [cell["config"]["pretrained_artifact"] for cell in cells]
    assert used[0] == used[1] and used[0]["name"] == "pretrained-llama2-es-tiny"
    assert used[0]["uri"] == entry.as_uri() and entry.name.endswith(used[0]["key_digest"][:16])


class RecordingRun:
    """An online W&B run as far as `use_artifact` goes (no network in tests)."""

    offline = False

    def __init__(self) -> None:
        self.used = []

    def use_artifact(self, artifact):
        self.used.append(artifact)


def test_online_cells_use_the_reference_artifact(tmp_path):
    folder = tmp_path / "llama2-es-tiny-0123456789abcdef"
    (folder / "epoch-1").mkdir(parents=True)
    (folder / "epoch-1" / "model.safetensors").write_bytes(b"weights")
    reference = ReferenceArtifact("pretrained-llama2-es-tiny", folder, "0123456789abcdef" * 4, {"k": 1})
    experiment = RecordingRun()
    use_reference_artifact(WandbLogger(experiment=experiment), reference)
    (artifact,) = experiment.used
    assert artifact.name == "pretrained-llama2-es-tiny" and artifact.type == "model"
    assert [e.ref for e in artifact.manifest.entries.values()] == [
        (folder / "epoch-1" / "model.safetensors").as_uri()
    ]
    assert artifact.metadata["key_digest"] == reference.digest and artifact.metadata["k"] == 1


def test_other_ranks_leave_the_run_alone(tmp_path, monkeypatch):
    """On ranks > 0 a W&B logger's experiment is Lightning's stand-in: nothing is used, logged or finished."""
    from lightning.pytorch.utilities import rank_zero_only

    experiment = RecordingRun()
    monkeypatch.setattr(rank_zero_only, "rank", 1)
    reference = ReferenceArtifact("pretrained-x", tmp_path, "0" * 64, {})
    with opened(WandbLogger(experiment=experiment)) as logger:
        use_reference_artifact(logger, reference)
        report_to_wandb(logger, {"test": {"f1": 0.5}}, tmp_path)
    assert experiment.used == []


def test_report_to_wandb_does_nothing_unless_wandb_is_the_logger(tmp_path):
    import wandb

    results = {"test": {"f1": 0.5, "per_document": {}}, "dev": {"f1": 0.4}}
    active = wandb.init(mode="offline", dir=str(tmp_path), project="other")
    try:
        report_to_wandb(CSVLogger(save_dir=str(tmp_path)), results, tmp_path)
        report_to_wandb(None, results, tmp_path)
        assert "test/f1" not in dict(active.summary)
        report_to_wandb(WandbLogger(experiment=active), results, tmp_path)
        assert active.summary["test/f1"] == 0.5
    finally:
        active.finish()


@pytest.mark.parametrize("log_text", [False, True])
def test_wandb_gets_error_category_counts_and_text_only_when_asked(tmp_path, log_text):
    import wandb

    from clinical_ner.data.brat import write_ann
    from clinical_ner.data.types import Document, Span
    from clinical_ner.metrics.span_scorer import score_documents

    text = "Se pautó omeprazol y ferritina sérica baja."
    gold = [Document("d1", text, [Span(9, 18, "NORMALIZABLES"), Span(21, 30, "PROTEINAS")])]
    predicted = [Span(9, 18, "NORMALIZABLES"), Span(21, 37, "PROTEINAS"), Span(0, 8, "NORMALIZABLES")]
    folder = tmp_path / "predictions" / "test"
    folder.mkdir(parents=True)
    write_ann(folder / "d1.ann", text, predicted)
    scores = score_documents(gold, {"d1": predicted})
    active = wandb.init(mode="offline", dir=str(tmp_path), project="errors")
    try:
        report_to_wandb(
            WandbLogger(experiment=active), {"test": scores.to_dict()}, tmp_path, log_text, gold=gold
        )
        summary = dict(active.summary)
    finally:
        active.finish()
    errors = {key: value for key, value in summary.items() if key.startswith("test/errors/")}
    assert errors == {
        "test/errors/exact/tp": 1,
        "test/errors/boundary/fp": 1,
        "test/errors/boundary/fn": 1,
        "test/errors/spurious/fp": 1,
    }
    for side, count in (("tp", scores.tp), ("fp", scores.fp), ("fn", scores.fn)):
        assert sum(v for k, v in errors.items() if k.endswith(f"/{side}")) == count
    wandb.teardown()  # the W&B service writes the finished run's records out
    # every file of the offline run (its record and its tables' media files)
    logged = b"".join(p.read_bytes() for p in (tmp_path / "wandb").rglob("*") if p.is_file())
    assert (b"ferritina s\xc3\xa9rica" in logged) is log_text  # the clinical text leaves only when asked
    assert (b"omeprazol" in logged) is log_text
    assert b"test/errors" in logged

"""Every full-scale (`scale=paper`) configuration composes, the impossible ones are refused by name, and
without weights a run stops in seconds with one line (exit 2), not with a traceback after minutes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from clinical_ner.config import compose_config
from clinical_ner.distributed import checks
from clinical_ner.errors import UserError

CONF = Path(__file__).resolve().parents[2] / "conf"
MODELS = sorted(p.stem for p in (CONF / "model").glob("*.yaml"))
CORPORA = ["none", "es", "en", "bilingual"]
APPROACHES = ["tokencls", "seq2seq"]
QUANTIZATIONS = ["none", "nf4"]
TRAINERS = ["default", "ddp", "fsdp"]
GRID = [
    (m, c, a, q, t)
    for m in MODELS
    for c in CORPORA
    for a in APPROACHES
    for q in QUANTIZATIONS
    for t in TRAINERS
]


def paper(model: str, corpus: str, approach: str, quant: str, trainer: str, *extra: str):
    return compose_config(
        [f"model={model}", "scale=paper", f"corpus={corpus}", f"approach={approach}"]
        + [f"quantization={quant}", f"trainer={trainer}", *extra]
    )


def refusal(corpus: str, quant: str, trainer: str) -> str | None:
    """Why a grid cell cannot run as composed (the paper recipes fine-tune with LoRA), or None."""
    if trainer == "fsdp":
        return "use trainer=ddp"  # FSDP shards full fine-tuning; LoRA/QLoRA fit on one GPU each
    if quant == "nf4" and corpus != "none":
        return "continual pretraining updates every weight"
    return None


@pytest.fixture
def two_gpus(monkeypatch):
    """The checks as on a 2-GPU node (they only count devices; nothing is placed on them)."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)


@pytest.fixture(scope="module")
def weights(tmp_path_factory) -> Path:
    """A folder that looks like a checkpoint to the start-up check (config.json only)."""
    folder = tmp_path_factory.mktemp("weights")
    (folder / "config.json").write_text("{}")
    return folder


@pytest.mark.parametrize("model,corpus,approach,quant,trainer", GRID)
def test_every_paper_config_composes_and_is_accepted_or_refused_by_name(
    model, corpus, approach, quant, trainer, two_gpus, weights
):
    cfg = paper(model, corpus, approach, quant, trainer, f"model.path={weights}")
    assert cfg.scale.pretrained and cfg.model.family == model
    assert cfg.approach.finetune == "lora"
    assert cfg.approach.lora.r == (12 if approach == "tokencls" else 64)
    assert cfg.trainer.precision == "bf16-mixed"  # the recipe's: bf16 compute, fp32 LoRA (apply_lora)
    assert cfg.trainer.strategy == ("auto" if trainer == "default" else trainer)
    assert str(cfg.quantization.name) == quant
    assert cfg.pretrain.block_size == 4096
    reason = refusal(corpus, quant, trainer)
    if reason is None:
        assert checks.check_job(cfg) == (2 if trainer == "ddp" else 1)
    else:
        with pytest.raises(UserError, match=reason):
            checks.check_job(cfg)


@pytest.mark.parametrize("approach", APPROACHES)
@pytest.mark.parametrize("corpus", CORPORA)
def test_fsdp_full_fine_tuning_is_accepted(approach, corpus, two_gpus, weights):
    cfg = paper(
        "llama3_1", corpus, approach, "none", "fsdp", "approach.finetune=full", f"model.path={weights}"
    )
    assert checks.check_job(cfg) == 2


@pytest.mark.parametrize(
    "model,corpus,approach,quant,trainer",
    [(m, c, a, q, t) for m, c, a, q, t in GRID if refusal(c, q, t) is None],
)
def test_missing_weights_are_named_before_anything_loads(
    model, corpus, approach, quant, trainer, two_gpus, tmp_path
):
    missing = tmp_path / "no-such-checkpoint"
    with pytest.raises(UserError, match=f"model.path={missing} is not a folder"):
        checks.check_job(paper(model, corpus, approach, quant, trainer, f"model.path={missing}"))


@pytest.mark.parametrize("approach", APPROACHES)
def test_offline_hub_without_cached_weights_is_named(approach, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    cfg = paper("llama3", "none", approach, "none", "default")
    expected = cfg.model.instruct_id if approach == "seq2seq" else cfg.model.hf_id
    with pytest.raises(UserError, match=f"'{expected}' are not in the local Hugging Face cache"):
        checks.check_job(cfg)


def test_a_folder_without_config_is_no_checkpoint(tmp_path):
    with pytest.raises(UserError, match="has no config.json"):
        checks.check_job(paper("llama2", "none", "tokencls", "none", "default", f"model.path={tmp_path}"))


@pytest.mark.parametrize(
    "args,env",
    [
        (["approach=tokencls", "model=llama3_1", "model.path={missing}"], {}),
        (["approach=seq2seq", "model=llama3_2", "quantization=nf4", "trainer=ddp"], {"HF_HUB_OFFLINE": "1"}),
        (["approach=tokencls", "model=llama2", "corpus=bilingual"], {"HF_HUB_OFFLINE": "1"}),
    ],
)
def test_paper_run_without_weights_stops_in_seconds_with_one_line(tmp_path, args, env):
    run_dir = tmp_path / "run"
    args = [a.format(missing=tmp_path / "missing") for a in args]
    environment = {
        **os.environ,
        **env,
        "HF_HOME": str(tmp_path / "hf"),  # an empty Hugging Face cache
        "CLINICAL_NER_CACHE": str(tmp_path / "cache"),
        "WANDB_MODE": "offline",
    }
    start = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-m", "clinical_ner.train", "scale=paper", *args, f"hydra.run.dir={run_dir}"],
        capture_output=True,
        text=True,
        env=environment,
        timeout=300,
    )
    seconds = time.monotonic() - start
    assert proc.returncode == 2, proc.stderr[-2000:]
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "Traceback" not in proc.stderr, proc.stderr[-2000:]
    assert "model.path" in errors[0]  # says how to fix it
    assert seconds < 60, seconds  # checked before data, tokenizer or model load
    record = json.loads((run_dir / "results.json").read_text())
    assert record["status"] == "failed" and record["error"] == errors[0].removeprefix("error: ")
    assert not (tmp_path / "cache").exists()

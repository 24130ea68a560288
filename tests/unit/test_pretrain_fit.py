"""The planner plans continual pretraining as the code runs it (fp32 master weights under mixed precision), and
a pretraining that cannot fit the GPU is refused at start with one line."""

from __future__ import annotations

import pytest

import clinical_ner.pretrain.stage as pretrain_run
from clinical_ner.config import compose_config
from clinical_ner.errors import UserError
from clinical_ner.planning.memory import GiB
from clinical_ner.planning.setup import plan_pretrain, pretrain_misfit


def paper_pretrain(*extra: str):
    return compose_config(["model=llama2", "scale=paper", "corpus=es", *extra])


def test_pretraining_is_planned_with_fp32_master_weights():
    plan = plan_pretrain(paper_pretrain())
    assert plan.setup.precision.name == "bf16-mixed" and plan.setup.precision.params == 4
    assert plan.weights == 4 * plan.params.base  # the code upcasts the bf16 checkpoint (pretrain_run)
    state = plan.weights + plan.gradients + plan.optimizer
    assert state > 100 * GiB  # Llama 2-7B: 16 B/param before activations (the old plan said 78.6 GiB in all)


def test_a_pretraining_that_cannot_fit_is_one_line():
    message = pretrain_misfit(paper_pretrain(), 80 * GiB)
    assert message is not None and "\n" not in message
    assert "llama2" in message and "80 GiB" in message and "pretrain.trainer.devices" in message
    assert pretrain_misfit(paper_pretrain(), None) is None  # memory unknown (CPU): nothing refused
    assert pretrain_misfit(paper_pretrain("pretrain.trainer.devices=4"), 80 * GiB) is None  # FSDP over 4 GPUs
    assert pretrain_misfit(compose_config(["model=llama2", "scale=paper"]), 80 * GiB) is None  # corpus=none


def test_the_stage_refuses_before_preparing_the_corpus(tmp_path, monkeypatch, corpora_dir):
    monkeypatch.setenv("CLINICAL_NER_CACHE", str(tmp_path / "cache"))
    cfg = compose_config(
        ["data=synthetic", "corpus=es", f"corpus.root={corpora_dir}", "scale.vocab_size=600"]
    )
    monkeypatch.setattr(pretrain_run, "_device_memory", lambda accelerator: 64 * 2**20)  # a 64 MiB GPU
    prepared = []
    monkeypatch.setattr(pretrain_run, "build_pretrain_data", lambda *a, **k: prepared.append(1))
    with pytest.raises(UserError, match="needs about .* GiB per device .* the device has 0 GiB"):
        pretrain_run.run_pretrain(cfg, tmp_path / "run")
    assert not prepared

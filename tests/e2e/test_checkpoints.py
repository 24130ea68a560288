"""Adapter (LoRA) checkpoints hold only what is trained, reload the best weights, and resume exactly."""

from __future__ import annotations

import os
from pathlib import Path

import lightning as L
import pytest
import torch
from composing import compose_train

from clinical_ner.errors import UserError
from clinical_ner.run.pipeline import run
from clinical_ner.training import fit
from clinical_ner.training.checkpoints import BASE_KEY

CONF = Path(__file__).resolve().parents[2] / "conf"
# the tiny default sizes (4.7M parameters), LoRA r 12 on every projection + the `score` head, two epochs
LORA = [
    "data=synthetic",
    "data.train_limit=24",
    "data.eval_limit=4",
    "data.batch_size=8",
    "approach.finetune=lora",
    "trainer.max_epochs=2",
    "logger=none",
    "trainer.enable_progress_bar=false",
    "trainer.threads=1",
    "save_model=false",
    "approach.token_dropout=0",
    "approach.lora.dropout=0",
]
# the resume-equality run draws dropout masks (token dropout on the inputs, LoRA dropout on every adapter)
DROPOUT = ("approach.token_dropout=0.1", "approach.lora.dropout=0.1")


@pytest.fixture(scope="module", autouse=True)
def cache(tmp_path_factory):
    before = os.environ.get("CLINICAL_NER_CACHE")
    os.environ["CLINICAL_NER_CACHE"] = str(tmp_path_factory.mktemp("cache"))
    yield
    if before is None:
        os.environ.pop("CLINICAL_NER_CACHE")
    else:
        os.environ["CLINICAL_NER_CACHE"] = before


def train(run_dir: Path, *extra: str) -> dict:
    return run(compose_train([*LORA, f"output_dir={run_dir}", *extra]))


class Crash(L.Callback):
    """Ends the fit like a killed job: at the start of the second epoch, after epoch 1's checkpoints."""

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.current_epoch == 1:
            raise RuntimeError("interrupted")


class KeepFinal(L.Callback):
    """The trained weights as fitting ends (last.ckpt is only rewritten when dev F1 improves)."""

    weights: dict[str, torch.Tensor] = {}

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        trained = {n: p.detach().clone() for n, p in pl_module.named_parameters() if p.requires_grad}
        KeepFinal.weights = trained


def with_callbacks(make, *extra: L.Callback):
    def wrapped(cfg, run_dir):
        callbacks, checkpoint, timer = make(cfg, run_dir)
        return [*callbacks, *extra], checkpoint, timer

    return wrapped


@pytest.mark.slow
def test_lora_checkpoint_holds_only_trained_weights_and_resumes_exactly(tmp_path, monkeypatch):
    make_callbacks = fit.make_callbacks
    monkeypatch.setattr(fit, "make_callbacks", with_callbacks(make_callbacks, KeepFinal()))
    whole = train(tmp_path / "whole", *DROPOUT)
    final = KeepFinal.weights
    last = tmp_path / "whole" / "checkpoints" / "last.ckpt"
    saved = torch.load(last, map_location="cpu", weights_only=True)
    # (a) no frozen base key: LoRA factors and the fully trained head only, plus the base's identity
    assert saved["state_dict"] and all("lora_" in k or "modules_to_save" in k for k in saved["state_dict"])
    assert saved[BASE_KEY]["source"] == "random init" and saved[BASE_KEY]["samples"]
    trained = sum(v.numel() for v in saved["state_dict"].values())
    assert trained == whole["train"]["trainable_parameters"]
    full_weights = 4 * whole["train"]["parameters"]  # fp32 bytes of the whole model, what it used to hold
    size = last.stat().st_size
    print(
        f"last.ckpt: {size / 2**20:.2f} MiB; the model's fp32 weights alone: {full_weights / 2**20:.2f} MiB"
    )
    assert size < full_weights / 4
    # the best dev-F1 weights came back from such a checkpoint
    assert whole["train"]["best_epoch"] is not None and whole["train"]["best_checkpoint"]

    # (b) killed at the start of epoch 2, then resumed from its last checkpoint: the same run, dropout included
    cut = tmp_path / "cut"
    monkeypatch.setattr(fit, "make_callbacks", with_callbacks(make_callbacks, Crash()))
    with pytest.raises(RuntimeError, match="interrupted"):
        train(cut, *DROPOUT)
    monkeypatch.setattr(fit, "make_callbacks", with_callbacks(make_callbacks, KeepFinal()))
    resumed = train(cut, "ckpt_path=last", *DROPOUT)
    assert resumed["train"]["steps"] == whole["train"]["steps"]
    assert KeepFinal.weights.keys() == final.keys()
    for name, value in final.items():
        torch.testing.assert_close(KeepFinal.weights[name], value, rtol=0, atol=1e-6)
    for split in ("dev", "test"):
        assert resumed[split]["per_document"] == whole[split]["per_document"]
        assert resumed[split]["f1"] == pytest.approx(whole[split]["f1"], abs=1e-9)

    # another frozen base (a tiny base is drawn from the seed), or other adapters, are refused in one line
    with pytest.raises(UserError, match="another frozen base"):
        train(tmp_path / "other", "seed=7", f"ckpt_path={last}")
    with pytest.raises(UserError, match="other trained weights"):
        train(tmp_path / "rank", "approach.lora.r=4", f"ckpt_path={last}")


def test_last_checkpoint_follows_every_epoch_not_only_the_best(tmp_path):
    # a learning rate too small to change dev F1: epoch 0 stays the best, the run goes on for two more epochs
    results = train(tmp_path, "trainer.max_epochs=3", "optim.lr=1e-12")
    assert results["train"]["best_epoch"] == 0
    last = torch.load(tmp_path / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    assert last["epoch"] == 2  # what a resumed run starts after (ModelCheckpoint's save_last kept epoch 0)
    best = last["callbacks"][next(k for k in last["callbacks"] if k.startswith("ModelCheckpoint"))]
    assert "epoch=00" in best["best_model_path"]
    # the best checkpoint only feeds load_best: weights without optimizer states (a third of a full FT's size)
    weights = torch.load(best["best_model_path"], map_location="cpu", weights_only=True)
    assert "optimizer_states" in last and "optimizer_states" not in weights and weights["epoch"] == 0

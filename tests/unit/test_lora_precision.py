"""Paper recipes train LoRA with fp32 trainable weights on a bf16 base (bf16 compute), and the planner counts it."""

from __future__ import annotations

from functools import partial
from pathlib import Path
from types import SimpleNamespace

import lightning as L
import pytest
import torch
from torch.utils.data import DataLoader
from transformers import LlamaForCausalLM

from clinical_ner.approaches.tokencls.datamodule import WindowDataset
from clinical_ner.approaches.tokencls.module import TokenClsModule
from clinical_ner.config import compose_config
from clinical_ner.data.batching import PadCollator
from clinical_ner.models.backbone import TOKEN_CLS_HEAD, build_causal_lm, build_token_classifier
from clinical_ner.models.lora import apply_lora
from clinical_ner.planning.memory import plan_setup
from clinical_ner.planning.setup import setup_for
from clinical_ner.training.fit import finetune_trainer
from clinical_ner.training.optim import OptimSpec

LABELS = ["O", "B-X", "I-X"]


class StubTokenizer:
    pad_token_id = 0


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory, tiny_llama) -> Path:
    """A toy Llama saved like a real checkpoint, which scale=paper loads in bf16 through model.path."""
    folder = tmp_path_factory.mktemp("base")
    tiny_llama(LlamaForCausalLM).save_pretrained(folder)
    return folder


def paper(checkpoint: Path, approach: str, tmp_path: Path):
    return compose_config(
        [f"approach={approach}", "scale=paper", f"model.path={checkpoint}", "approach.lora.r=4"]
        + [
            "trainer.accelerator=cpu",
            "trainer.max_steps=2",
            "logger=none",
            "trainer.enable_progress_bar=false",
        ]
        + [f"output_dir={tmp_path}"]
    )


def build(cfg):
    """The model as the run's stage builds it."""
    if cfg.approach.name == "seq2seq":
        model = build_causal_lm(cfg.model, cfg.scale, StubTokenizer(), instruct=True)
        return apply_lora(model, cfg.approach.lora, "CAUSAL_LM", modules_to_save=None)
    model = build_token_classifier(cfg.model, cfg.scale, StubTokenizer(), LABELS, bidirectional=True)
    return apply_lora(model, cfg.approach.lora, "TOKEN_CLS", modules_to_save=[TOKEN_CLS_HEAD])


def assert_master_dtypes(model: torch.nn.Module) -> None:
    trained = {n: p.dtype for n, p in model.named_parameters() if p.requires_grad}
    frozen = {n: p.dtype for n, p in model.named_parameters() if not p.requires_grad}
    assert trained and set(trained.values()) == {torch.float32}, trained
    assert frozen and set(frozen.values()) == {torch.bfloat16}, frozen


@pytest.mark.parametrize("approach", ["tokencls", "seq2seq"])
def test_paper_lora_trains_fp32_weights_on_a_bf16_base(checkpoint, tmp_path, approach):
    cfg = paper(checkpoint, approach, tmp_path)
    assert cfg.trainer.precision == "bf16-mixed"  # autocast: Lightning leaves the dtypes as built
    model = build(cfg)
    assert_master_dtypes(model)
    if approach == "tokencls":  # the `score` copy is trained too, in fp32
        head = model.get_base_model().score.modules_to_save["default"]
        assert head.weight.requires_grad and head.weight.dtype == torch.float32

    # the planner counts fp32 for everything trained (adapters and head copy), bf16 for the base
    plan = plan_setup(setup_for(cfg, cuda=False))
    assert plan.setup.precision.mixed and plan.adapters == 4 * plan.params.adapters
    assert plan.weights == 2 * plan.params.base


def test_training_keeps_the_master_dtypes(checkpoint, tmp_path):
    cfg = paper(checkpoint, "tokencls", tmp_path)
    model = build(cfg)
    before = {n: p.detach().clone() for n, p in model.named_parameters() if "lora_B" in n}
    module = TokenClsModule(
        model, OptimSpec(partial(torch.optim.AdamW), 1e-2, 0.0, 1.0), lambda p: {}, pad_id=0
    )
    # token windows of 3-5 ids with labels, as the datamodule makes them
    windows = [
        SimpleNamespace(input_ids=[1, 5, 9, 3, 7][: 3 + i % 3], labels=[0, 1, 2, 0, 1][: 3 + i % 3])
        for i in range(8)
    ]
    loader = DataLoader(WindowDataset(windows), batch_size=4, collate_fn=PadCollator(0))
    L.seed_everything(0, verbose=False)
    finetune_trainer(cfg, tmp_path, [], None).fit(module, train_dataloaders=loader)
    assert_master_dtypes(model)
    assert any(not torch.equal(before[n], p.detach()) for n, p in model.named_parameters() if n in before)

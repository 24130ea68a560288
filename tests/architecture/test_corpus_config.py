"""The `corpus` axis and the `pretrain.*` section compose against the schema, apart from fine-tuning's `trainer.*`."""

from __future__ import annotations

from pathlib import Path

import pytest
from composing import compose_train
from hydra.errors import ConfigCompositionException

CONF = Path(__file__).resolve().parents[2] / "conf"


@pytest.mark.parametrize("corpus", ["none", "es", "en", "bilingual"])
@pytest.mark.parametrize("scale", ["tiny", "paper"])
def test_every_corpus_composes_at_every_scale(corpus, scale):
    cfg = compose_train([f"corpus={corpus}", f"scale={scale}"])
    assert cfg.corpus.name == corpus
    assert 1 <= cfg.pretrain.use_epoch <= cfg.pretrain.epochs == 2  # the paper's two epochs
    optimizer = cfg.pretrain.optimizer
    assert optimizer._target_ == "torch.optim.AdamW" and optimizer._partial_
    assert list(optimizer.betas) == [0.9, 0.95] and optimizer.weight_decay == 0.1
    assert cfg.pretrain.min_lr_ratio < 1 and cfg.pretrain.gradient_clip_val == 1.0
    assert cfg.pretrain.block_size == (256 if scale == "tiny" else 4096)


def test_fine_tuning_limits_leave_pretraining_alone():
    base = compose_train(["corpus=bilingual"])
    limited = compose_train(["corpus=bilingual", "trainer.max_steps=5", "trainer.max_epochs=1"])
    assert limited.trainer.max_steps == 5
    assert limited.pretrain == base.pretrain


@pytest.mark.parametrize(
    "bad",
    ["corpus=french", "corpus.name=fr", "pretrain.epochz=3", "pretrain.epochs=two", "corpus.es_ratio=half"],
)
def test_bad_corpus_settings_fail_at_compose_time(bad):
    with pytest.raises(ConfigCompositionException):
        compose_train([bad])


def test_bilingual_ratio_and_settings_override():
    cfg = compose_train(
        ["corpus=bilingual", "corpus.es_ratio=0.3", "pretrain.use_epoch=1", "pretrain.flops=formula"]
    )
    assert cfg.corpus.es_ratio == 0.3 and cfg.pretrain.use_epoch == 1 and cfg.pretrain.flops == "formula"

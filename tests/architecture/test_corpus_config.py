"""The `corpus` axis and the `pretrain.*` section compose against the schema, apart from fine-tuning's `trainer.*`;
the pretraining stage's own `pretrain.trainer` has the same type."""

from __future__ import annotations

from pathlib import Path

import pytest
from composing import compose_train
from hydra.errors import ConfigCompositionException
from omegaconf import OmegaConf

CONF = Path(__file__).resolve().parents[2] / "conf"


@pytest.mark.parametrize("corpus", ["none", "es", "en", "bilingual"])
@pytest.mark.parametrize("scale", ["tiny", "paper"])
def test_every_corpus_composes_at_every_scale(corpus, scale):
    cfg = compose_train([f"corpus={corpus}", f"scale={scale}"])
    assert cfg.corpus.name == corpus
    assert 1 <= cfg.pretrain.use_epoch <= cfg.pretrain.trainer.max_epochs == 2  # the paper's two epochs
    optimizer = cfg.pretrain.optimizer
    assert optimizer._target_ == "torch.optim.AdamW" and optimizer._partial_
    assert list(optimizer.betas) == [0.9, 0.95] and optimizer.weight_decay == 0.1
    assert cfg.pretrain.min_lr_ratio < 1 and cfg.pretrain.trainer.gradient_clip_val == 1.0
    assert cfg.pretrain.block_size == (256 if scale == "tiny" else 4096)


@pytest.mark.parametrize(
    "setting", ["compile=true", "threads=2", "early_stopping_patience=2", "auto_micro_batch=false"]
)
def test_a_fine_tuning_only_trainer_setting_is_refused_for_pretraining(setting):
    from clinical_ner.config import compose_config
    from clinical_ner.errors import UserError

    name = setting.split("=")[0]
    with pytest.raises(UserError, match=rf"pretrain\.trainer\.{name}: continual pretraining does not use it"):
        compose_config(["corpus=es", f"pretrain.trainer.{setting}"])
    assert compose_config(["corpus=es", f"trainer.{setting}"]).corpus.name == "es"  # fine-tuning reads it


def test_the_pretraining_trainer_is_the_fine_tuning_trainer_type_with_its_own_values():
    from clinical_ner.config import TrainerConfig, compose_config

    cfg = compose_config(["corpus=es", "scale=paper", "model=llama3", "approach=seq2seq"])
    assert OmegaConf.get_type(cfg.pretrain.trainer) is OmegaConf.get_type(cfg.trainer) is TrainerConfig
    assert cfg.pretrain.trainer.max_epochs == 2 and cfg.trainer.max_epochs == 6
    assert cfg.pretrain.trainer.precision == "bf16-mixed" and cfg.pretrain.trainer.gradient_checkpointing
    assert cfg.pretrain.trainer.log_every_n_steps == 10 and cfg.trainer.log_every_n_steps == 20


def test_fine_tuning_limits_leave_pretraining_alone():
    base = compose_train(["corpus=bilingual"])
    limited = compose_train(["corpus=bilingual", "trainer.max_steps=5", "trainer.max_epochs=1"])
    assert limited.trainer.max_steps == 5
    assert limited.pretrain == base.pretrain


@pytest.mark.parametrize(
    "bad",
    [
        "corpus=french",
        "corpus.name=fr",
        "pretrain.epochz=3",
        "pretrain.trainer.max_epochs=two",
        "corpus.es_ratio=half",
    ],
)
def test_bad_corpus_settings_fail_at_compose_time(bad):
    with pytest.raises(ConfigCompositionException):
        compose_train([bad])


def test_bilingual_ratio_and_settings_override():
    cfg = compose_train(
        ["corpus=bilingual", "corpus.es_ratio=0.3", "pretrain.use_epoch=1", "pretrain.flops=formula"]
    )
    assert cfg.corpus.es_ratio == 0.3 and cfg.pretrain.use_epoch == 1 and cfg.pretrain.flops == "formula"

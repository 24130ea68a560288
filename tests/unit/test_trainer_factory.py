"""One Trainer factory for both stages: every TrainerConfig field that is an `L.Trainer` argument reaches the
Trainer as it is (fine-tuning's `trainer` and continual pretraining's `pretrain.trainer` alike)."""

from __future__ import annotations

import dataclasses

from clinical_ner.config import TrainerConfig, compose_config
from clinical_ner.training.trainer import LIGHTNING_ARGS, lightning_args, make_trainer

# the L.Trainer arguments make_trainer used to copy one by one (training/finetune.py before the split)
COPIED_BEFORE = {
    "accelerator",
    "devices",
    "strategy",
    "precision",
    "max_epochs",
    "max_steps",
    "accumulate_grad_batches",
    "gradient_clip_val",
    "val_check_interval",
    "check_val_every_n_epoch",
    "log_every_n_steps",
    "deterministic",
    "num_sanity_val_steps",
    "fast_dev_run",
    "enable_progress_bar",
}


def test_the_lightning_fields_are_the_ones_copied_by_hand_before():
    fields = {f.name for f in dataclasses.fields(TrainerConfig)}
    assert fields & LIGHTNING_ARGS == COPIED_BEFORE


def test_settings_reach_the_trainer_of_either_stage(tmp_path):
    cfg = compose_config(
        ["corpus=es", "trainer.accelerator=cpu", "trainer.precision=32-true", "trainer.max_steps=7"]
        + [
            "trainer.accumulate_grad_batches=3",
            "trainer.gradient_clip_val=0.5",
            "trainer.log_every_n_steps=4",
        ]
        + ["trainer.enable_progress_bar=false", "pretrain.trainer.accelerator=cpu"]
        + ["pretrain.trainer.precision=32-true", "pretrain.trainer.enable_progress_bar=false"]
    )
    finetune = make_trainer(cfg.trainer, tmp_path, [], None, use_distributed_sampler=False)
    assert (finetune.max_steps, finetune.accumulate_grad_batches, finetune.gradient_clip_val) == (7, 3, 0.5)
    assert finetune.log_every_n_steps == 4 and finetune.max_epochs == cfg.trainer.max_epochs
    assert not finetune._accelerator_connector.use_distributed_sampler
    pretrain = make_trainer(cfg.pretrain.trainer, tmp_path, [], None, enable_checkpointing=False)
    assert (pretrain.max_epochs, pretrain.log_every_n_steps, pretrain.max_steps) == (2, 10, -1)
    assert pretrain.checkpoint_callback is None  # what the stage fixes wins over the settings


def test_a_trainer_config_object_passes_through_like_a_config_node():
    settings = TrainerConfig(max_epochs=3, enable_progress_bar=False)
    args = lightning_args(settings)
    assert args["max_epochs"] == 3 and args["strategy"] == "auto" and args["enable_progress_bar"] is False
    assert "compile" not in args and "threads" not in args  # ours, not Lightning's

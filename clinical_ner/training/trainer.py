"""The Lightning Trainer of a stage, from its `TrainerConfig` (fine-tuning's `trainer`, continual pretraining's
`pretrain.trainer`): every field that is an `L.Trainer` argument goes to it as it is; the stage adds what it
fixes itself (callbacks, logger, its folder, anything else `L.Trainer` takes)."""

from __future__ import annotations

import dataclasses
import inspect
from pathlib import Path
from typing import Any

import lightning as L
from omegaconf import OmegaConf

from clinical_ner.console import progress

# the names L.Trainer takes: a TrainerConfig field among them is Lightning's own argument
LIGHTNING_ARGS = frozenset(inspect.signature(L.Trainer.__init__).parameters) - {"self"}


def make_strategy(name: str, sharding_strategy: str = "FULL_SHARD", activation_checkpointing: bool = True):
    """A Trainer `strategy`: `fsdp` shards each LlamaDecoderLayer (and checkpoints its activations), saving
    full consolidated checkpoints; any other name goes to Lightning as it is (auto, ddp)."""
    if name != "fsdp":
        return name
    from lightning.pytorch.strategies import FSDPStrategy
    from transformers.models.llama.modeling_llama import LlamaDecoderLayer

    return FSDPStrategy(
        auto_wrap_policy={LlamaDecoderLayer},
        activation_checkpointing_policy={LlamaDecoderLayer} if activation_checkpointing else None,
        sharding_strategy=sharding_strategy,
        state_dict_type="full",  # one file the best-checkpoint reload and save_pretrained can read
    )


def lightning_args(settings: Any) -> dict[str, Any]:
    """The fields of a `TrainerConfig` that `L.Trainer` takes, as plain values: `strategy` built by
    `make_strategy` and `enable_progress_bar` decided (null: when stderr is a terminal)."""
    if OmegaConf.is_config(settings):
        values = OmegaConf.to_container(settings, resolve=True)
    else:  # a TrainerConfig object
        values = dataclasses.asdict(settings)
    args = {name: value for name, value in values.items() if name in LIGHTNING_ARGS}
    args["strategy"] = make_strategy(
        settings.strategy, settings.sharding_strategy, settings.activation_checkpointing
    )
    args["enable_progress_bar"] = progress.wanted(settings.enable_progress_bar)
    return args


def make_trainer(
    settings: Any, root: Path, callbacks: list[L.Callback], logger: Any, **fixed: Any
) -> L.Trainer:
    """The Lightning Trainer of one stage's `settings` writing under `root`, with its `callbacks` and `logger`
    (None: none); `fixed`: further `L.Trainer` arguments the stage sets itself, which win over `settings`."""
    args = {
        **lightning_args(settings),
        "default_root_dir": str(root),
        "callbacks": callbacks,
        "logger": logger if logger is not None else False,
        **fixed,
    }
    return L.Trainer(**args)

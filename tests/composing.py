"""Composing run configs in tests: conf/ with overrides, as Hydra hands them to `train.main` (unchecked), and
the one list of micro-model overrides every quick end-to-end run starts from. Also served as the conftest
fixtures `compose` and `micro`."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from hydra import compose, initialize_config_dir

import clinical_ner.config  # noqa: F401  (registers the schema)

CONF = Path(__file__).resolve().parent.parent / "conf"
# a micro model (hidden 64, 2 layers, MLP 128) at the default tiny scale; runs add their own vocabulary size
MICRO = ["scale.hidden_size=64", "scale.num_layers=2", "scale.intermediate_size=128"]
# smaller still (hidden 32, one layer, 400 tokens): config-coverage runs where only "does it run" counts
NANO = [
    "scale.hidden_size=32",
    "scale.intermediate_size=64",
    "scale.num_layers=1",
    "scale.num_heads=2",
    "scale.vocab_size=400",
]


def compose_train(overrides: Sequence[str] = (), hydra: bool = False):
    """conf/train.yaml composed with `overrides` (the `hydra` node too when asked), no value checks run."""
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return compose("train", overrides=list(overrides), return_hydra_config=hydra)

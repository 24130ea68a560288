"""Registering the schema with Hydra (train_schema, <approach>_schema, the override_tag resolver) and
composing a run config from conf/ outside a Hydra job. Importing clinical_ner.config registers both."""

from __future__ import annotations

from hydra.core.config_store import ConfigStore

from clinical_ner.config.compare import register_resolvers
from clinical_ner.config.schema import APPROACH_SCHEMAS, TrainConfig, check_config


def compose_config(overrides: list[str] | None = None):
    """The run config from conf/ with Hydra overrides, outside a Hydra job (scripts, notebooks)."""
    from pathlib import Path

    from hydra import compose, initialize_config_dir

    conf = Path(__file__).resolve().parents[2] / "conf"  # clinical_ner/config/compose.py -> the checkout
    with initialize_config_dir(config_dir=str(conf), version_base="1.3"):
        cfg = compose("train", overrides=["output_dir=/tmp/clinical_ner", *(overrides or [])])
    check_config(cfg)
    return cfg


def register_configs() -> None:
    """Register the schemas: conf/train.yaml lists `train_schema` first in its defaults, each
    conf/approach/<name>.yaml its approach's `<name>_schema`."""
    store = ConfigStore.instance()
    store.store(name="train_schema", node=TrainConfig)
    for name, schema in APPROACH_SCHEMAS.items():
        store.store(group="approach", name=f"{name}_schema", node=schema)


register_configs()
register_resolvers()

"""Each default in one place: a group option's YAML never repeats a schema default, and the options a run
composes by default never contradict one (clinical_ner/config/schema.py against conf/)."""

from __future__ import annotations

import pytest
import yaml
from composing import CONF
from omegaconf import DictConfig, OmegaConf

from clinical_ner.config import APPROACH_SCHEMAS, TrainConfig, compose_config

# groups merged onto one schema node (their package); the others (recipe, budget, debug, ...) are _global_
# overlays, whose every value deviates from what the base groups composed before them
BASE_GROUPS = [
    "approach",
    "model",
    "scale",
    "corpus",
    "pretrain",
    "data",
    "trainer",
    "quantization",
    "logger",
]
# what a run composes when the command line names nothing (conf/train.yaml; each approach its own recipe)
DEFAULT_CHOICES = {
    "approach": ["tokencls", "seq2seq"],
    "model": ["llama2"],
    "scale": ["tiny"],
    "corpus": ["none"],
    "pretrain": ["tiny"],
    "data": ["pharmaconer"],
    "trainer": ["default"],
    "quantization": ["none"],
    "logger": ["wandb"],
    "prompt": ["es"],
    "recipe": ["tokencls_tiny", "seq2seq_tiny"],
    "budget": ["full"],
}
MISSING = object()


def schema(approach: str) -> DictConfig:
    """The typed schema with `approach`'s own settings."""
    return OmegaConf.merge(OmegaConf.structured(TrainConfig), {"approach": APPROACH_SCHEMAS[approach]})


def leaves(values: dict, node: DictConfig, path: str):
    """(dotted key, YAML value, schema default or MISSING) for every value a YAML sets below `node`."""
    for key, value in values.items():
        where = f"{path}.{key}" if path else key
        assert key in node.keys(), f"{where}: not in the schema"  # noqa: SIM118 (`in` skips MISSING keys)
        if OmegaConf.is_missing(node, key):
            yield where, value, MISSING
        elif isinstance(value, dict) and OmegaConf.get_type(node, key) not in (dict, None):
            yield from leaves(value, node[key], where)
        else:
            default = node[key]
            default = OmegaConf.to_container(default) if OmegaConf.is_config(default) else default
            yield where, value, getattr(default, "value", default)


def option_leaves(group: str, option: str):
    """Every value conf/<group>/<option>.yaml sets, against the schema default at its place."""
    values = yaml.safe_load((CONF / group / f"{option}.yaml").read_text()) or {}
    values = {k: v for k, v in values.items() if k not in ("defaults", "hydra")}
    approach = (
        option
        if group == "approach"
        else "seq2seq"
        if "seq2seq" in option or group == "prompt"
        else "tokencls"
    )
    root = schema(approach)
    if group == "prompt":
        return list(leaves(values, root.approach.prompt, "approach.prompt"))
    if group in BASE_GROUPS:
        return list(leaves(values, root[group], group))
    return list(leaves(values, root, ""))


def options(group: str) -> list[str]:
    return sorted(path.stem for path in (CONF / group).glob("*.yaml"))


@pytest.mark.parametrize(
    ("group", "option"),
    [pytest.param(g, o, id=f"{g}/{o}") for g in [*BASE_GROUPS, "prompt"] for o in options(g)],
)
def test_no_option_repeats_a_schema_default(group, option):
    repeated = [key for key, value, default in option_leaves(group, option) if value == default]
    assert not repeated, f"conf/{group}/{option}.yaml repeats the schema default of {repeated}: drop the line"


@pytest.mark.parametrize(
    ("group", "option"),
    [pytest.param(g, o, id=f"{g}/{o}") for g, chosen in DEFAULT_CHOICES.items() for o in chosen],
)
def test_default_choices_never_contradict_the_schema(group, option):
    contradicted = [
        f"{key}: yaml {value!r}, schema {default!r}"
        for key, value, default in option_leaves(group, option)
        if default is not MISSING and value != default
    ]
    assert not contradicted, (
        f"conf/{group}/{option}.yaml is composed by default but contradicts the schema "
        f"(make the schema field MISSING, or its default the YAML's value): {contradicted}"
    )


@pytest.mark.parametrize("approach", ["tokencls", "seq2seq"])
@pytest.mark.parametrize(
    ("group", "option"), [(g, o) for g in BASE_GROUPS if g != "approach" for o in options(g)]
)
def test_every_option_composes_with_nothing_missing(group, option, approach):
    cfg = compose_config(
        [f"approach={approach}", f"{group}={option}"]
    )  # check_config: to_object fails on ???
    assert not OmegaConf.missing_keys(cfg)

"""Every config group option composes against the typed schema; typos fail at compose time."""

from __future__ import annotations

from pathlib import Path

import pytest
from composing import compose_train
from hydra.errors import ConfigCompositionException
from omegaconf import OmegaConf

CONF = Path(__file__).resolve().parents[2] / "conf"


def options(group: str) -> list[str]:
    return sorted(p.stem for p in (CONF / group).glob("*.yaml"))


GROUPS = ["model", "scale", "approach", "corpus", "pretrain", "data", "trainer", "logger"]


@pytest.mark.parametrize("group,option", [(g, o) for g in GROUPS for o in options(g)])
def test_every_option_composes(group, option):
    cfg = compose_train([f"{group}={option}"])
    OmegaConf.to_container(cfg, resolve=False, throw_on_missing=False)
    assert cfg[group] is not None


@pytest.mark.parametrize("model", options("model"))
@pytest.mark.parametrize("scale", options("scale"))
def test_model_x_scale_composes_with_recipe(model, scale):
    cfg = compose_train([f"model={model}", f"scale={scale}"])
    assert cfg.optim.lr > 0
    assert cfg.model.hf_id.split("/")[0] in ("meta-llama", "HuggingFaceTB")  # Llama families, SmolLM2
    if scale == "paper":
        assert cfg.approach.finetune == "lora" and cfg.approach.lora.r == 12 and cfg.approach.lora.alpha == 32
        assert cfg.optim.lr == pytest.approx(1e-4)


@pytest.mark.parametrize("bad", ["trainer.max_stepz=5", "approach.label_positon=last", "model=llama4"])
def test_typos_fail_at_compose_time(bad):
    with pytest.raises(ConfigCompositionException):
        compose_train([bad])


@pytest.mark.parametrize(
    "bad",
    [
        "trainer.max_steps=five",
        "seed=abc",
        "approach.attention=bidirectionl",
        "approach.label_position=middle",
    ],
)
def test_wrong_types_fail_at_compose_time(bad):
    with pytest.raises(ConfigCompositionException):
        compose_train([bad])


def test_trainer_max_steps_override():
    assert compose_train(["trainer.max_steps=5"]).trainer.max_steps == 5


def test_public_config_drops_secrets_and_keeps_token_budgets():
    from omegaconf import OmegaConf

    from clinical_ner.config import public_config

    cfg = OmegaConf.create(
        {
            "hf_token": "hf_x",
            "api_key": "k",
            "nested": {"password": "p", "secret": "s", "max_new_tokens": 256},
        }
    )
    cfg.max_tokens = 10
    cfg.token_dropout = 0.1
    assert public_config(cfg) == {"nested": {"max_new_tokens": 256}, "max_tokens": 10, "token_dropout": 0.1}


def test_each_approach_has_only_its_own_settings():
    from clinical_ner.config import ApproachName, Seq2seqApproachConfig, TokenClsApproachConfig, public_config

    tok, s2s = (public_config(compose_train([f"approach={a}"]).approach) for a in ApproachName)
    assert OmegaConf.get_type(compose_train(["approach=seq2seq"]).approach) is Seq2seqApproachConfig
    assert OmegaConf.get_type(compose_train([]).approach) is TokenClsApproachConfig
    assert {"label_position", "stride", "attention", "token_dropout"} <= set(tok)
    assert not {"prompt", "unit", "decoding", "val_limit"} & set(tok)
    assert {"prompt", "unit", "decoding", "val_limit"} <= set(s2s)
    assert not {"label_position", "stride", "attention", "token_dropout", "embedding_dropout"} & set(s2s)


@pytest.mark.parametrize(
    "overrides",
    [["approach=seq2seq", "approach.stride=8"], ["approach.decoding=free"], ["approach.name=ner"]],
)
def test_a_setting_of_another_approach_or_an_unknown_name_fails_at_compose_time(overrides):
    with pytest.raises(ConfigCompositionException):
        compose_train(overrides)


def test_a_name_that_is_not_the_composed_approach_is_a_user_error():
    from clinical_ner.config import check_approach
    from clinical_ner.errors import UserError

    check_approach(compose_train(["approach=seq2seq"]).approach)
    with pytest.raises(UserError, match="approach.name=seq2seq but .*TokenClsApproachConfig"):
        check_approach(compose_train(["approach.name=seq2seq"]).approach)


@pytest.mark.parametrize("key", ["data.train_limit", "data.eval_limit", "approach.val_limit"])
@pytest.mark.parametrize("value", [0, -3])
def test_document_limits_below_one_are_refused(key, value):
    from clinical_ner.config import compose_config
    from clinical_ner.errors import UserError

    # 0 used to mean "every document" silently (`if limit`)
    with pytest.raises(UserError, match=rf"{key}={value} must be at least 1"):
        compose_config(["approach=seq2seq", f"{key}={value}"])
    assert compose_config(["approach=seq2seq", f"{key}=null", f"{key}=3"]).approach.name == "seq2seq"


def test_eval_limit_zero_is_one_error_line_and_exit_2(tmp_path):
    import os
    import subprocess
    import sys

    overrides = ["data=synthetic", "data.eval_limit=0", "logger=none", "trainer.max_steps=1"]
    proc = subprocess.run(
        [sys.executable, "-m", "clinical_ner.train", *overrides, f"hydra.run.dir={tmp_path}"],
        capture_output=True,
        text=True,
        env={**os.environ, "CLINICAL_NER_CACHE": str(tmp_path / "cache")},
    )
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert errors == ["error: data.eval_limit=0 must be at least 1 (null means every document)"]

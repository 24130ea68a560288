"""The approach registry and the shared fine-tuning skeleton's inputs."""

from __future__ import annotations

import inspect
from pathlib import Path

import pytest

from clinical_ner.config import APPROACH_SCHEMAS, ApproachName, compose_config
from clinical_ner.errors import UserError
from clinical_ner.run.registry import APPROACHES, stage_class
from clinical_ner.training.inputs import RunInputs
from clinical_ner.training.stage import FineTuneStage

CONF = Path(__file__).resolve().parents[2] / "conf"


def test_every_approach_config_has_a_stage_and_back():
    assert set(APPROACHES) == {p.stem for p in (CONF / "approach").glob("*.yaml")}
    assert set(APPROACHES) == set(ApproachName) == set(APPROACH_SCHEMAS)  # the closed set of approach.name


@pytest.mark.parametrize("name", sorted(APPROACHES))
def test_each_stage_implements_the_whole_interface(name):
    stage = stage_class(name)
    assert issubclass(stage, FineTuneStage) and not inspect.isabstract(stage), stage.__abstractmethods__
    assert stage.__module__ == f"clinical_ner.approaches.{name}.stage"  # one folder per approach


def test_unknown_approach_is_a_user_error():
    with pytest.raises(UserError, match="unknown approach=ner; expected one of tokencls, seq2seq"):
        stage_class("ner")


def test_run_inputs_build_one_tokenizer_per_run(tmp_path, monkeypatch):
    monkeypatch.setenv("CLINICAL_NER_CACHE", str(tmp_path))
    cfg = compose_config(["data=synthetic", "scale.vocab_size=400"])
    inputs = RunInputs.load(cfg)
    assert inputs.types == ["DOSIS", "FARMACO", "SINTOMA"]
    # tiny scale has no instruct tokenizer: pretraining, token classification and seq2seq share one object
    assert inputs.tokenizer() is inputs.tokenizer(instruct=True) is inputs.tokenizer()

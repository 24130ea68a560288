"""The inference settings saved beside a model: one typed dataclass per approach, one reader/writer."""

from __future__ import annotations

import json

import pytest

from clinical_ner.approaches.seq2seq.inference import PromptSettings, Seq2seqInference
from clinical_ner.approaches.tokencls.inference import TokenClsInference
from clinical_ner.errors import UserError
from clinical_ner.run.record.folder import INFERENCE_FILE
from clinical_ner.training.inference_settings import (
    read_inference_settings,
    saved_approach,
    write_inference_settings,
)

TOKENCLS = TokenClsInference("bf16-mixed", 64, "last", "begin", 256, 32)
SEQ2SEQ = Seq2seqInference(
    "32",
    16,
    "sentence",
    "constrained",
    192,
    ["DOSIS", "FARMACO"],
    PromptSettings("Menciones.", "{text}", "{instruction}\n{user}", False),
    0.5,
    True,
)


@pytest.mark.parametrize("settings", [TOKENCLS, SEQ2SEQ], ids=["tokencls", "seq2seq"])
def test_settings_round_trip_with_their_approach_name(tmp_path, settings):
    write_inference_settings(tmp_path, settings)
    assert json.loads((tmp_path / INFERENCE_FILE).read_text())["approach"] == settings.APPROACH
    assert saved_approach(tmp_path) == settings.APPROACH
    assert read_inference_settings(tmp_path, type(settings)) == settings


def test_the_file_keeps_the_format_predict_has_always_read(tmp_path):
    write_inference_settings(tmp_path, TOKENCLS)
    assert json.loads((tmp_path / INFERENCE_FILE).read_text()) == {
        "approach": "tokencls",
        "precision": "bf16-mixed",
        "eval_batch_size": 64,
        "label_position": "last",
        "ill_formed": "begin",
        "max_length": 256,
        "stride": 32,
    }


def test_a_folder_saved_before_the_decoding_options_reads_with_their_old_behaviour(tmp_path):
    write_inference_settings(tmp_path, SEQ2SEQ)
    raw = json.loads((tmp_path / INFERENCE_FILE).read_text())
    del raw["entity_bias"], raw["whole_words"]
    (tmp_path / INFERENCE_FILE).write_text(json.dumps(raw))
    settings = read_inference_settings(tmp_path, Seq2seqInference)
    assert (settings.entity_bias, settings.whole_words) == (0.0, False)


def _edited(tmp_path, **changes):
    write_inference_settings(tmp_path, TOKENCLS)
    raw = {**json.loads((tmp_path / INFERENCE_FILE).read_text()), **changes}
    (tmp_path / INFERENCE_FILE).write_text(json.dumps({k: v for k, v in raw.items() if v is not None}))
    return tmp_path


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"stride": None}, "stride: .*missing mandatory value"),
        ({"label_position": "middle"}, "label_position"),
        ({"max_length": "long"}, "max_length"),
        ({"window": 3}, "window"),
        ({"approach": "seq2seq"}, "a seq2seq model, expected tokencls"),
    ],
)
def test_a_bad_settings_file_is_a_one_line_user_error(tmp_path, changes, message):
    folder = _edited(tmp_path, **changes)
    with pytest.raises(UserError, match=message) as err:
        read_inference_settings(folder, TokenClsInference)
    assert "\n" not in str(err.value)


def test_a_folder_without_settings_is_a_user_error(tmp_path):
    with pytest.raises(UserError, match="no clinical_ner.json: not a model folder"):
        read_inference_settings(tmp_path, TokenClsInference)
    (tmp_path / INFERENCE_FILE).write_text("{")
    with pytest.raises(UserError, match="not valid JSON"):
        saved_approach(tmp_path)

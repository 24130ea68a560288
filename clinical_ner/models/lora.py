"""LoRA adapters (peft) on a backbone, QLoRA's k-bit preparation first, with fp32 master weights for what
trains."""

from __future__ import annotations

import torch
from transformers import PreTrainedModel

from clinical_ner.config import LoraConfig
from clinical_ner.models import quantize


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

"""A trained model saved for plain transformers: weights (LoRA merged), tokenizer and inference settings."""

from __future__ import annotations

from pathlib import Path

from clinical_ner.models import quantize
from clinical_ner.training.inference_settings import InferenceSettings, write_inference_settings
from clinical_ner.training.rank_zero import is_global_zero


def save_model(model, tokenizer, folder: Path, settings: InferenceSettings) -> None:
    """`save_pretrained` (safetensors) + tokenizer + inference settings; LoRA adapters are merged so plain
    transformers loads it, except on a 4-bit base (QLoRA), whose adapter and head are saved as they are
    (`load_token_classifier` re-attaches them). Every rank calls it; only rank 0 writes."""
    model = getattr(model, "_orig_mod", model)  # unwrap torch.compile
    main = is_global_zero()
    if quantize.is_quantized(model) and hasattr(model, "get_base_model"):
        quantize.save_adapter(model, folder, is_main_process=main)
    else:
        if hasattr(model, "merge_and_unload"):
            model = model.merge_and_unload()
        model.save_pretrained(folder, is_main_process=main)
    if main:
        tokenizer.save_pretrained(folder)
        write_inference_settings(folder, settings)

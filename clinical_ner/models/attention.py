"""The attention direction of a Llama model: causal, or bidirectional (token classification's option)."""

from __future__ import annotations

import torch


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

"""Autocast contexts for Lightning precision strings (inference outside the Trainer)."""

from __future__ import annotations

import contextlib

import torch


def autocast_for(precision: str, device: torch.device):
    """The autocast context matching a Lightning precision string (bf16-mixed -> bf16 autocast)."""
    if precision.startswith("bf16") or precision.startswith("16"):
        dtype = torch.bfloat16 if precision.startswith("bf16") else torch.float16
        return torch.autocast(device_type=device.type, dtype=dtype)
    return contextlib.nullcontext()

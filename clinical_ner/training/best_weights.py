"""The best dev-F1 weights back into a fitted module (after FSDP, into an unsharded copy of its model)."""

from __future__ import annotations

from pathlib import Path

import lightning as L
import torch
from lightning.pytorch.callbacks import ModelCheckpoint

from clinical_ner.models.attention import is_bidirectional, set_attention_direction
from clinical_ner.training.checkpoints import load_trained


def _fsdp_device(module: L.LightningModule) -> torch.device | None:
    """The rank's device when the module was trained under FSDP (its layers are then sharded), else None."""
    from lightning.pytorch.strategies import FSDPStrategy

    try:
        strategy = module.trainer.strategy
    except RuntimeError:  # not attached to a Trainer
        return None
    return strategy.root_device if isinstance(strategy, FSDPStrategy) else None


def unsharded_copy(model: torch.nn.Module, state_dict: dict, device: torch.device) -> torch.nn.Module:
    """A plain (unwrapped) copy of a transformers model holding `state_dict`, on `device`: after FSDP the
    trained model's layers stay sharded wrappers that only run in step with every rank inside the Trainer."""
    model = getattr(model, "_orig_mod", model)
    dtype = next(v.dtype for v in state_dict.values() if v.is_floating_point())
    with torch.device(device):
        fresh = type(model)._from_config(model.config, dtype=dtype)
    fresh.load_state_dict(state_dict)
    set_attention_direction(fresh, is_bidirectional(fresh))
    return fresh.train(model.training)


def load_best(module: L.LightningModule, checkpoint: ModelCheckpoint, last: Path) -> int | None:
    """Put the best dev-F1 weights back into the module; returns the best epoch if known. After FSDP the
    module's model is replaced by an unsharded copy (best checkpoint, else the `last` one)."""
    fsdp_device = _fsdp_device(module)
    path = checkpoint.best_model_path or (str(last) if fsdp_device is not None and last.is_file() else "")
    if not path:
        return None
    # mmap: a full checkpoint also holds optimizer states, which every rank would otherwise read into memory
    state = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    if fsdp_device is None:
        load_trained(module, state, path)  # an adapter run's checkpoint holds only the trained weights
    else:
        weights = {
            k.removeprefix("model."): v for k, v in state["state_dict"].items() if k.startswith("model.")
        }
        module.model = unsharded_copy(module.model, weights, fsdp_device)
    return int(state.get("epoch", -1)) if checkpoint.best_model_path else None

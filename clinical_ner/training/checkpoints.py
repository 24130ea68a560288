"""Lightning checkpoints that hold only what is trained.

An adapter run (LoRA, QLoRA) trains a few million weights on a frozen base of billions; a plain Lightning
checkpoint would carry the base too (6-16 GB per file). Here the checkpoint keeps the trainable weights (and
persistent buffers), the optimizer and loop states Lightning adds, and the identity of the frozen base it was
trained on: where it came from and a sample of every frozen tensor. Loading it (resume, or the best weights after
fit) is strict for the trained weights, skips only the frozen ones, and refuses a checkpoint whose base differs
from the one this run loaded. Full fine-tuning has no frozen weights: its checkpoints are unchanged.

Every checkpoint also carries the torch random states, so a resumed run draws the same dropout masks as one
that was never interrupted.
"""

from __future__ import annotations

from typing import Any

import lightning as L
import torch

from clinical_ner.errors import UserError

BASE_KEY = "frozen_base"  # in the checkpoint: the identity of the base its weights were trained on
RNG_KEY = "rng_states"
SAMPLES = 64  # values read from each frozen tensor for the base's identity
SAME_BASE_RTOL = 1e-2  # the base may come back in another dtype (bf16-true converts it after a restore)


def trained_weights(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The state-dict entries of the trainable parameters and persistent buffers (tied names included)."""
    names = {n for n, p in module.named_parameters(remove_duplicate=False) if p.requires_grad}
    names |= {n for n, _ in module.named_buffers(remove_duplicate=False)}
    return {k: v for k, v in module.state_dict(keep_vars=True).items() if k in names}


def frozen_parameters(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The parameters that do not train, by name."""
    return {n: p for n, p in module.named_parameters(remove_duplicate=False) if not p.requires_grad}


def _sample(tensor: torch.Tensor) -> torch.Tensor:
    # evenly spread values as float32 on the CPU: a few kilobytes however large the base is
    flat = tensor.detach().reshape(-1)
    step = max(1, flat.numel() // SAMPLES)
    return flat[::step][:SAMPLES].to("cpu", torch.float32).clone()


def _source(module: torch.nn.Module) -> str:
    model = getattr(module, "model", module)
    model = getattr(model, "_orig_mod", model)  # torch.compile
    if hasattr(model, "get_base_model"):  # peft
        model = model.get_base_model()
    return getattr(getattr(model, "config", None), "_name_or_path", "") or "random init"


def base_identity(module: torch.nn.Module) -> dict[str, Any]:
    """Where the frozen base came from (`model.path`, hub id or `random init`) and a sample of each frozen tensor."""
    frozen = frozen_parameters(module)
    return {
        "source": _source(module),
        "shapes": {name: list(p.shape) for name, p in frozen.items()},
        "samples": {name: _sample(p) for name, p in frozen.items()},
    }


def _differs(saved: dict[str, Any], mine: dict[str, Any]) -> str | None:
    """Why two base identities are not the same base, or None when they are."""
    if saved["shapes"] != mine["shapes"]:
        return "its frozen tensors have other names or shapes"
    for name, values in saved["samples"].items():
        if not torch.allclose(values, mine["samples"][name], rtol=SAME_BASE_RTOL, atol=1e-6):
            return f"frozen weight {name} holds other values"
    return None


def check_trained_only(module: torch.nn.Module, checkpoint: dict, origin: str) -> bool:
    """True when `checkpoint` (from `origin`) holds only trained weights and fits this module: the same trained
    keys and the same frozen base; False for a full checkpoint (loaded strictly as it is). Raises a UserError
    when it cannot be loaded into this module."""
    saved = checkpoint.get(BASE_KEY)
    if saved is None:
        return False
    expected, weights = trained_weights(module), checkpoint["state_dict"]
    found = set(weights)
    reshaped = sorted(k for k in found & set(expected) if weights[k].shape != expected[k].shape)
    if found != set(expected) or reshaped:
        example = sorted(found ^ set(expected))[0] if found != set(expected) else reshaped[0]
        raise UserError(
            f"checkpoint {origin} holds other trained weights than this run trains ({len(found - set(expected))}"
            f" unexpected, {len(set(expected) - found)} missing, {len(reshaped)} of another shape, e.g. "
            f"{example}): resume with the approach, approach.finetune and approach.lora it was written with"
        )
    mine = base_identity(module)
    why = _differs(saved, mine)
    if why is not None:
        raise UserError(
            f"checkpoint {origin} was trained on another frozen base ({saved['source']}) than this run loaded "
            f"({mine['source']}): {why}; resume with the model (model.path) and seed it was written with"
        )
    return True


def load_trained(module: torch.nn.Module, checkpoint: dict, origin: str) -> None:
    """Load a checkpoint's weights into `module`: strictly, except for the frozen base a trained-only checkpoint
    leaves out (after checking it is the same base)."""
    strict = not check_trained_only(module, checkpoint, origin)
    module.load_state_dict(checkpoint["state_dict"], strict=strict)


def _rng_states() -> dict[str, Any]:
    cuda = torch.cuda.get_rng_state_all() if torch.cuda.is_available() and torch.cuda.is_initialized() else []
    return {"torch": torch.get_rng_state(), "cuda": cuda}


def _set_rng_states(states: dict[str, Any]) -> None:
    torch.set_rng_state(states["torch"])
    if states["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])


class TrainedOnlyCheckpoints(L.LightningModule):
    """LightningModule hooks: checkpoints without the frozen base, checked and loaded back (see the module
    docstring), with the torch random states."""

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        checkpoint[RNG_KEY] = _rng_states()
        if not frozen_parameters(self):  # full fine-tuning (FSDP included: it refuses adapters)
            return
        keep = trained_weights(self)
        checkpoint["state_dict"] = {k: v for k, v in checkpoint["state_dict"].items() if k in keep}
        if getattr(self, "_base_identity", None) is None:  # the base never changes: sampled once
            self._base_identity = base_identity(self)
        checkpoint[BASE_KEY] = self._base_identity

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        origin = str(getattr(self.trainer, "ckpt_path", None) or "being restored")
        # Lightning loads the state dict right after this hook with `strict=self.strict_loading`
        self.strict_loading = not check_trained_only(self, checkpoint, origin)
        if RNG_KEY in checkpoint:
            _set_rng_states(checkpoint[RNG_KEY])

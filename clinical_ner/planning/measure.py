"""Measure what the planner predicts, on a model built by the project's own builders with random weights (no
download): parameter, gradient and AdamW-state bytes, and the bytes autograd saves for backward."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import torch

from clinical_ner.config import ScaleConfig
from clinical_ner.models.backbone import TOKEN_CLS_HEAD, build_causal_lm, build_token_classifier
from clinical_ner.models.lora import apply_lora
from clinical_ner.planning.memory import PROJECTIONS, Setup


class Vocab:
    """Stands in for a tokenizer: the builders read only its length and special ids."""

    pad_token_id, bos_token_id, eos_token_id = 0, 1, 2

    def __init__(self, size: int) -> None:
        self.size = size

    def __len__(self) -> int:
        return self.size


@contextlib.contextmanager
def default_dtype(dtype: torch.dtype) -> Iterator[None]:
    """Build modules directly in `dtype` (a 7B model never exists in fp32)."""
    before = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        yield
    finally:
        torch.set_default_dtype(before)


def quantize_nf4(model: torch.nn.Module, double_quant: bool = True) -> int:
    """Replace every decoder projection by a bitsandbytes NF4 `Linear4bit` (bf16 compute), as
    `from_pretrained(quantization_config=BitsAndBytesConfig(load_in_4bit=True, ...))` does; returns how many."""
    import bitsandbytes as bnb

    count = 0
    for module in list(model.modules()):
        for name, child in list(module.named_children()):
            if name not in PROJECTIONS or not isinstance(child, torch.nn.Linear):
                continue
            device = child.weight.device
            quantized = bnb.nn.Linear4bit(
                child.in_features,
                child.out_features,
                bias=child.bias is not None,
                compute_dtype=torch.bfloat16,
                compress_statistics=double_quant,
                quant_type="nf4",
                device="meta",
            )
            quantized.weight = bnb.nn.Params4bit(
                child.weight.data.to(torch.bfloat16),
                requires_grad=False,
                compress_statistics=double_quant,
                quant_type="nf4",
            )
            setattr(module, name, quantized.to(device))  # `.to` quantizes
            del child
            count += 1
    return count


def build_model(cfg: Any, setup: Setup, device: str | torch.device = "cpu") -> torch.nn.Module:
    """The stage's model at `setup.arch` sizes with random weights, on `device`, in the parameter dtype of
    `setup.precision`: token classifier or causal LM (project builders), NF4 projections, checkpointing, LoRA."""
    a = setup.arch
    positions = (
        cfg.model.arch.max_position_embeddings if cfg.scale.pretrained else cfg.scale.max_position_embeddings
    )
    scale = ScaleConfig(
        name="plan",
        pretrained=False,
        hidden_size=a.hidden,
        intermediate_size=a.intermediate,
        num_layers=a.layers,
        num_heads=a.heads,
        vocab_size=a.vocab,
        max_position_embeddings=positions,
    )
    vocab = Vocab(a.vocab)
    dtype = torch.bfloat16 if setup.precision.params == 2 else torch.float32
    with default_dtype(dtype), torch.device(device):
        if setup.causal_lm:
            model = build_causal_lm(cfg.model, scale, vocab)
        else:
            labels = [f"L{i}" for i in range(setup.num_labels)]
            bidirectional = str(cfg.approach.attention) == "bidirectional"
            model = build_token_classifier(cfg.model, scale, vocab, labels, bidirectional=bidirectional)
        if setup.nf4:
            quantize_nf4(model, setup.double_quant)
        if setup.checkpointing:
            model.gradient_checkpointing_enable()
            model.config.use_cache = False
        if setup.lora is not None:
            lora = cfg.approach.lora
            if setup.causal_lm:
                model = apply_lora(model, lora, "CAUSAL_LM", modules_to_save=None)
            else:
                model = apply_lora(model, lora, "TOKEN_CLS", modules_to_save=[TOKEN_CLS_HEAD])
    if setup.precision.name.endswith("-true"):  # Lightning's convert_module: adapters (and head copy) too
        model = model.to(dtype)
    return model.train()


def random_batch(setup: Setup, device: str | torch.device = "cpu", seed: int = 0) -> dict[str, torch.Tensor]:
    """`setup.batch` x `setup.length` random ids; with `padded`, the first row ends in padding (so the model
    builds an attention mask, as real padded batches do)."""
    g = torch.Generator().manual_seed(seed)
    shape = (setup.batch, setup.length)
    ids = torch.randint(3, setup.arch.vocab, shape, generator=g)
    batch = {"input_ids": ids}
    if setup.padded:
        mask = torch.ones(shape, dtype=torch.long)
        mask[0, -max(1, setup.length // 8) :] = 0
        batch["attention_mask"] = mask
    if setup.causal_lm:
        batch["labels"] = ids.clone()
    else:
        batch["labels"] = torch.randint(0, setup.num_labels, shape, generator=g)
    return {k: v.to(device) for k, v in batch.items()}


def _storages(tensors) -> dict[int, int]:
    return {t.untyped_storage().data_ptr(): t.untyped_storage().nbytes() for t in tensors}


def _quant_state_tensors(model: torch.nn.Module) -> list[torch.Tensor]:
    out = []
    for p in model.parameters():
        state = getattr(p, "quant_state", None)
        while state is not None:
            out += [t for t in (state.absmax, state.code, getattr(state, "offset", None)) if t is not None]
            state = getattr(state, "state2", None)
    return out


@dataclass(frozen=True)
class Measured:
    """Bytes measured on a real step; `weights` holds every parameter in full fine-tuning, the frozen ones with
    LoRA (NF4 constants included), `adapters` the trainable ones with LoRA."""

    weights: int
    adapters: int
    gradients: int
    optimizer: int
    activations: int  # saved for backward before the final norm (embedding + decoder layers)
    logits: int  # saved by the final norm, the head and the loss

    @property
    def total(self) -> int:
        return self.weights + self.adapters + self.gradients + self.optimizer + self.activations + self.logits


def final_norm(model: torch.nn.Module) -> torch.nn.Module:
    """The RMSNorm after the last decoder layer (`...model.norm`)."""
    return next(m for name, m in model.named_modules() if name.endswith("model.norm"))


def measure_step(model: torch.nn.Module, setup: Setup, batch: dict[str, torch.Tensor]) -> Measured:
    """One forward (under bf16 autocast for `*-mixed`), backward and AdamW step, measuring storage bytes; saved
    tensors are deduplicated by storage and parameters' storages are left out (they are weights)."""
    params = list(model.parameters())
    param_ptrs = set(_storages(params)) | set(_storages(_quant_state_tensors(model)))
    saved: dict[str, dict[int, int]] = {"activations": {}, "logits": {}}
    phase = ["activations"]

    def pack(t: torch.Tensor) -> torch.Tensor:
        storage = t.untyped_storage()
        if storage.data_ptr() not in param_ptrs:
            saved[phase[0]].setdefault(storage.data_ptr(), storage.nbytes())
        return t

    hook = final_norm(model).register_forward_pre_hook(lambda *_: phase.__setitem__(0, "logits"))
    device = params[0].device
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=setup.precision.mixed)
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t), autocast:
        loss = model(**batch).loss
    hook.remove()
    loss.backward()
    trainable = [p for p in params if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=1e-4)
    optimizer.step()
    state = [t for s in optimizer.state.values() for t in s.values() if t.device == device]  # moments + step
    frozen = sum(_storages([p for p in params if not p.requires_grad]).values())
    frozen += sum(_storages(_quant_state_tensors(model)).values())
    trained = sum(_storages(trainable).values())
    lora = setup.lora is not None
    return Measured(
        weights=frozen + (0 if lora else trained),
        adapters=trained if lora else 0,
        gradients=sum(p.grad.nbytes for p in trainable if p.grad is not None),
        optimizer=sum(t.nbytes for t in state),
        activations=sum(saved["activations"].values()),
        logits=sum(saved["logits"].values()),
    )

"""From a composed run config to the `Setup` of each stage it trains, and the memory plans of those stages."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from clinical_ner.models.backbone import kv_heads_at
from clinical_ner.planning.memory import (
    PHARMACONER_TYPES,
    Arch,
    GiB,
    Lora,
    MemoryPlan,
    Precision,
    Setup,
    plan_setup,
)

SYNTHETIC_TYPES = 3  # FARMACO, DOSIS, SINTOMA


def arch_of(cfg: Any) -> Arch:
    """The architecture the run builds: the real one (`model.arch`) at scale=paper, else the family's traits at the
    toy sizes of `scale` (kv heads keep the family's GQA ratio, as backbone.tiny_llama_config does; the vocabulary
    is the trained tokenizer's target size)."""
    arch = cfg.model.arch
    if cfg.scale.pretrained:
        return Arch(
            arch.vocab_size,
            arch.hidden_size,
            arch.intermediate_size,
            arch.num_layers,
            arch.num_heads,
            arch.num_kv_heads,
            bool(arch.tie_word_embeddings),
        )
    sc = cfg.scale
    kv = kv_heads_at(sc.num_heads, arch.num_heads, arch.num_kv_heads)
    return Arch(
        sc.vocab_size,
        sc.hidden_size,
        sc.intermediate_size,
        sc.num_layers,
        sc.num_heads,
        kv,
        bool(arch.tie_word_embeddings),
    )


def precision_of(name: Any, weights_dtype: str) -> Precision:
    """Lightning's precision string on weights loaded as `weights_dtype` (scale.dtype).

    `bf16-true` converts the module to bf16 (AdamW moments bf16 too, no fp32 master copy); `bf16-mixed` autocasts
    around weights left in their loaded dtype (fp32 at tiny scale, bf16 at paper scale); `32-true` is fp32.
    """
    name = str(name)
    if name == "auto":  # resolved at run start (planning/auto_precision.py); planned as the bf16 path
        name = "bf16-mixed"
    if name in ("32", "32-true"):
        return Precision(name, 4, 4)
    if name in ("bf16-true", "16-true"):
        return Precision(name, 2, 2)
    if name in ("bf16-mixed", "16-mixed", "bf16", "16"):
        return Precision(name, 4 if weights_dtype == "float32" else 2, 2, mixed=True)
    raise ValueError(f"unsupported precision '{name}' (32-true, bf16-true, bf16-mixed, 16-true, 16-mixed)")


def fp32_master_weights(precision: Any) -> bool:
    """Whether continual pretraining trains fp32 weights: under `*-mixed` it upcasts whatever `scale.dtype`
    loaded (clinical_ner/pretrain/stage.py), since at its small lr most AdamW updates of a bf16 weight round away."""
    return str(precision).endswith("-mixed") or str(precision) == "auto"


def device_count(devices: Any) -> int:
    """Lightning's `devices`: an int, a list of ids, or "auto"/-1 (planned as one device)."""
    if isinstance(devices, int):
        return max(1, devices)
    if isinstance(devices, str) and devices.strip().isdigit():
        return max(1, int(devices))
    try:
        return max(1, len(devices))
    except TypeError:
        return 1


def num_labels_of(cfg: Any) -> int:
    """BIO labels: 2 per entity type + O (PharmaCoNER: 4 types -> 9)."""
    types = cfg.data.types
    n = len(types) if types else SYNTHETIC_TYPES if str(cfg.data.name) == "synthetic" else PHARMACONER_TYPES
    return 2 * n + 1


def setup_for(cfg: Any, stage: str | None = None, cuda: bool = True) -> Setup:
    """The `Setup` of the fine-tuning stage (`stage=None`: `approach.name`) or of `stage="pretrain"`.

    Pretraining is full fine-tuning of the causal LM on packed blocks (no padding, so no attention mask) with
    `pretrain.*`, sharded with FSDP across `pretrain.trainer.devices`; fine-tuning uses `trainer.*`, `data.batch_size`,
    `approach.max_length` and `quantization.*`.
    """
    arch = arch_of(cfg)
    if stage == "pretrain":
        p, t = cfg.pretrain, cfg.pretrain.trainer
        devices = device_count(t.devices)
        weights = "float32" if fp32_master_weights(t.precision) else cfg.scale.dtype
        return Setup(
            "pretrain",
            arch,
            p.batch_size,
            p.block_size,
            precision_of(t.precision, weights),
            causal_lm=True,
            checkpointing=bool(t.gradient_checkpointing),
            padded=False,
            devices=devices,
            fsdp=devices > 1,
            cuda=cuda,
        )
    ap = cfg.approach
    stage = stage or str(ap.name)
    lora = None
    if str(ap.finetune) == "lora":
        lora = Lora(ap.lora.r, float(ap.lora.dropout), tuple(ap.lora.target_modules))
    nf4 = str(cfg.quantization.name) == "nf4"
    if nf4 and lora is None:
        raise ValueError("quantization=nf4 trains LoRA adapters on a frozen base: set approach.finetune=lora")
    seq2seq = stage == "seq2seq"
    return Setup(
        stage,
        arch,
        cfg.data.batch_size,
        ap.max_length,
        precision_of(cfg.trainer.precision, cfg.scale.dtype),
        lora=lora,
        causal_lm=seq2seq,
        num_labels=num_labels_of(cfg),
        nf4=nf4,
        double_quant=bool(cfg.quantization.double_quant),
        devices=device_count(cfg.trainer.devices),
        cuda=cuda,
        eval_batch=cfg.data.eval_batch_size if seq2seq else 0,
        eval_tokens=ap.max_length + ap.max_new_tokens if seq2seq else 0,
    )


def plan_memory(cfg: Any, cuda: bool = True, checkpointing: bool | None = None) -> MemoryPlan:
    """Memory plan of the run's fine-tuning stage (`approach`); a pure function of the config.

    `cuda=False` plans CPU kernels (how tests measure it); `checkpointing` overrides the stage's setting.
    """
    setup = setup_for(cfg, cuda=cuda)
    if checkpointing is not None:
        setup = replace(setup, checkpointing=checkpointing)
    return plan_setup(setup)


def plan_pretrain(cfg: Any, cuda: bool = True) -> MemoryPlan | None:
    """Memory plan of the continual-pretraining stage, or None when `corpus=none` skips it."""
    if str(cfg.corpus.name) == "none":
        return None
    return plan_setup(setup_for(cfg, "pretrain", cuda=cuda))


def micro_batch_for(cfg: Any, device_bytes: int) -> tuple[int, int]:
    """(micro-batch, accumulation) that keep the recipe's effective batch (`data.batch_size` x
    `trainer.accumulate_grad_batches`) in the largest micro-batch whose fine-tuning plan fits `device_bytes`:
    bigger micro-batches amortize the per-kernel overhead of LoRA (clinical_ner/checks/gpu/mfu.py on an H200, effective batch
    16 of 256-token windows: MFU 0.267 -> 0.301 at 8B, 0.137 -> 0.215 at 3B going from 8 x 2 to 16 x 1).
    The recipe's own split when no larger micro-batch fits."""
    batch, accumulate = int(cfg.data.batch_size), int(cfg.trainer.accumulate_grad_batches)
    effective = batch * accumulate
    setup = setup_for(cfg, cuda=True)
    for micro in range(effective, batch, -1):
        if effective % micro == 0 and plan_setup(replace(setup, batch=micro)).total <= device_bytes:
            return micro, effective // micro
    return batch, accumulate


def pretrain_misfit(cfg: Any, device_bytes: int | None) -> str | None:
    """One line saying why the continual pretraining of `cfg` cannot fit a device of `device_bytes` (per-device
    plan: weights, gradients and AdamW states in the dtype the code trains, activations, CUDA overhead), or None
    when it fits, when `corpus=none`, or when the device memory is unknown (`device_bytes=None`: not CUDA)."""
    plan = plan_pretrain(cfg, cuda=True)
    if plan is None or device_bytes is None or plan.total <= device_bytes:
        return None
    state = (plan.weights + plan.gradients + plan.optimizer) / GiB
    bytes_per_param = plan.setup.precision.params
    return (
        f"continual pretraining of {cfg.model.family} (scale={cfg.scale.name}) needs about {plan.total / GiB:.0f} "
        f"GiB per device ({state:.0f} GiB of {bytes_per_param * 8}-bit weights, gradients and AdamW states) but "
        f"the device has {device_bytes / GiB:.0f} GiB: shard it (pretrain.trainer.devices=N pretrain.trainer.strategy=fsdp) or "
        f"plan it with python -m clinical_ner.planning.plan"
    )

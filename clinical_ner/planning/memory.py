"""GPU memory of a training stage from its config alone (no weights are loaded): weights, LoRA adapters,
gradients, AdamW state, the tensors autograd saves for backward, logits, and what CUDA adds on top.

Saved activations come from walking one forward pass of the Hugging Face Llama op by op (`_Walk`) and applying
autograd's rule: an op saves what its backward needs for the inputs that require a gradient. Tensors are keyed by
name, so one saved by several ops (the normed input of q/k/v) counts once, as a shared storage does. The walk
follows transformers 5.x `modeling_llama` + `sdpa_attention_forward`, peft LoRA and bitsandbytes `MatMul4Bit`;
tests/unit/test_plan.py measures it against real autograd on CPU.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

GiB = 2**30
PROJECTIONS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
NF4_BLOCK = 64  # bitsandbytes 4-bit: one absmax per 64 weights
NESTED_BLOCK = 256  # double quantization: one fp32 absmax per 256 (uint8) absmaxes
CUDA_CONTEXT = int(0.6 * GiB)  # CUDA context + cuBLAS workspace, torch 2.x with lazy module loading
FRAGMENTATION = 0.10  # caching-allocator slack, as a share of the tensor bytes
PHARMACONER_TYPES = 4  # NORMALIZABLES, NO_NORMALIZABLES, PROTEINAS, UNCLEAR -> 9 BIO labels


@dataclass(frozen=True)
class Arch:
    """The sizes that memory depends on."""

    vocab: int
    hidden: int
    intermediate: int
    layers: int
    heads: int
    kv_heads: int
    tied: bool = False  # lm_head shares the input embedding (Llama 3.2)

    @property
    def head_dim(self) -> int:
        return self.hidden // self.heads

    def linears(self) -> dict[str, tuple[int, int]]:
        """(in, out) features of each projection of one decoder layer."""
        h, i = self.hidden, self.intermediate
        q, kv = self.heads * self.head_dim, self.kv_heads * self.head_dim
        shapes = [(h, q), (h, kv), (h, kv), (q, h), (h, i), (h, i), (i, h)]
        return dict(zip(PROJECTIONS, shapes, strict=True))


@dataclass(frozen=True)
class Precision:
    """Bytes per element of parameters (and their gradients and AdamW moments) and of matmul outputs."""

    name: str
    params: int  # 4 fp32 | 2 bf16
    compute: int  # 2 under bf16 (autocast or true), 4 in fp32
    mixed: bool = False  # Lightning `*-mixed`: bf16 torch.autocast around the forward

    @property
    def adapters(self) -> int:
        """Bytes of what LoRA trains (A/B and the `score` copy): fp32 (lora.apply_lora) unless Lightning's
        `*-true` converts the whole module afterwards."""
        return 4 if self.mixed else self.params


@dataclass(frozen=True)
class Lora:
    r: int
    dropout: float
    targets: tuple[str, ...]


@dataclass(frozen=True)
class Setup:
    """One training stage as memory sees it."""

    stage: str  # tokencls | seq2seq | pretrain
    arch: Arch
    batch: int  # sequences per device and step
    length: int  # tokens per sequence (padded windows are assumed full)
    precision: Precision
    lora: Lora | None = None  # None: every weight is trained
    causal_lm: bool = False  # lm_head + next-token loss; else the `score` token classifier
    num_labels: int = 2 * PHARMACONER_TYPES + 1
    head_dropout: float = 0.1  # LlamaForTokenClassification's dropout before `score`
    nf4: bool = False  # frozen projections in bitsandbytes NF4 (QLoRA)
    double_quant: bool = True
    checkpointing: bool = False  # transformers' (non-reentrant) gradient checkpointing of each decoder layer
    padded: bool = True  # batches carry an attention mask: sdpa gets one (and GQA repeats k/v)
    devices: int = 1
    fsdp: bool = False  # full shard across `devices` (else DDP when devices > 1)
    cuda: bool = True  # CUDA kernels (bool dropout masks, padded attention bias); False: CPU kernels
    eval_batch: int = 0  # seq2seq generation batch, for the KV cache
    eval_tokens: int = 0  # prompt + generated tokens per sequence

    @property
    def tokens(self) -> int:
        return self.batch * self.length


@dataclass(frozen=True)
class Params:
    """Parameter counts of the built model (as `count_parameters` reports them)."""

    base: int  # the Llama with its head
    projections: int  # the 7 projections of every layer (what NF4 quantizes)
    adapters: int  # LoRA A/B + the trained copy of `score` (peft modules_to_save)
    head_copy: int  # the `score` copy among `adapters` (trained: fp32 like the adapters)
    trainable: int
    trainable_tensors: int  # AdamW keeps a `step` per tensor
    matmul: int  # weights multiplied per token: projections, adapters, head (embedding lookup excluded)
    layer: int  # one decoder layer (an FSDP unit)

    @property
    def total(self) -> int:
        return self.base + self.adapters


@dataclass(frozen=True)
class MemoryPlan:
    """Expected bytes per component on one device; `tensors` is what torch.cuda.max_memory_allocated sees."""

    setup: Setup
    params: Params
    weights: int  # frozen or trained base weights (NF4 + constants for quantized projections)
    adapters: int  # LoRA adapters + trained head copy
    gradients: int
    optimizer: int  # AdamW exp_avg + exp_avg_sq (+ step)
    activations: int  # saved for backward by the embedding and decoder layers
    logits: int  # saved by the final norm, the head and the loss
    transient: int  # short-lived peak: fp32 logit gradients, a recomputed layer, a dequantized NF4 weight
    distributed: int  # FSDP all-gathered layers / DDP gradient buckets
    kv_cache: int = 0  # seq2seq generation (not part of the training peak)
    layer_activations: int = 0  # saved by one (non-first) decoder layer without checkpointing
    notes: list[str] = field(default_factory=list)

    @property
    def tensors(self) -> int:
        return (
            self.weights
            + self.adapters
            + self.gradients
            + self.optimizer
            + self.activations
            + self.logits
            + self.transient
            + self.distributed
        )

    @property
    def context(self) -> int:
        return CUDA_CONTEXT if self.setup.cuda else 0

    @property
    def fragmentation(self) -> int:
        return int(FRAGMENTATION * self.tensors) if self.setup.cuda else 0

    @property
    def total(self) -> int:
        return self.tensors + self.context + self.fragmentation


# ---------------------------------------------------------------------------------------------------- parameters


def count_params(s: Setup) -> Params:
    """Exact parameter counts of the Llama (+ `score` or `lm_head`) and its LoRA adapters."""
    a = s.arch
    linears = a.linears()
    projections = a.layers * sum(i * o for i, o in linears.values())
    layer = sum(i * o for i, o in linears.values()) + 2 * a.hidden  # + 2 RMSNorm weights
    head = a.hidden * s.num_labels + s.num_labels  # `score` has a bias
    if s.causal_lm:
        head = 0 if a.tied else a.vocab * a.hidden
    base = a.vocab * a.hidden + a.layers * layer + a.hidden + head
    head_matmul = a.vocab * a.hidden if s.causal_lm else a.hidden * s.num_labels
    if s.lora is None:
        tensors = 1 + 9 * a.layers + 1 + (0 if s.causal_lm and a.tied else 1 if s.causal_lm else 2)
        return Params(base, projections, 0, 0, base, tensors, projections + head_matmul, layer)
    targets = [t for t in PROJECTIONS if t in s.lora.targets]
    lora = a.layers * sum(s.lora.r * sum(linears[t]) for t in targets)
    head_copy = 0 if s.causal_lm else head  # peft trains a copy of `score` and keeps the original
    tensors = 2 * len(targets) * a.layers + (0 if s.causal_lm else 2)
    matmul = projections + lora + head_matmul
    return Params(base, projections, lora + head_copy, head_copy, lora + head_copy, tensors, matmul, layer)


def nf4_bytes(numel: int, double_quant: bool = True) -> int:
    """Bytes of one weight in bitsandbytes NF4: 4 bits/weight + absmax per 64 (fp32, or with double quantization
    uint8 + an fp32 absmax per 256, an fp32 offset and the 256-entry fp32 dynamic map) + the 16-entry fp32 NF4 code.
    0.5 + 1/64 + 4/16384 = 0.516 byte/param with double quantization, 0.5625 without."""
    blocks = math.ceil(numel / NF4_BLOCK)
    nested = blocks + 4 * math.ceil(blocks / NESTED_BLOCK) + 4 + 256 * 4
    return math.ceil(numel / 2) + (nested if double_quant else 4 * blocks) + 16 * 4


# ---------------------------------------------------------------------------------------------------- activations


@dataclass(frozen=True)
class _T:
    """A tensor of the walked graph: its storage name, elements, bytes per element and whether it needs a grad."""

    name: str
    numel: int
    nbytes: int
    grad: bool


class _Walk:
    """One forward pass, op by op, recording {storage name: bytes} of what autograd saves for backward."""

    def __init__(self, s: Setup) -> None:
        self.s = s
        self.saved: dict[str, int] = {}

    def save(self, t: _T) -> None:
        self.saved[t.name] = t.numel * t.nbytes

    def new(self, name: str, features: int, nbytes: int, grad: bool) -> _T:
        return _T(name, self.s.tokens * features, nbytes, grad)

    @staticmethod
    def cast(x: _T, nbytes: int, tag: str) -> _T:
        """`.to(dtype)`: the same tensor when the dtype matches, else a copy (saved by nobody yet)."""
        return x if x.nbytes == nbytes else replace(x, name=f"{x.name}>{tag}", nbytes=nbytes)

    def linear(self, x: _T, name: str, n_in: int, n_out: int, trainable: bool, weight_bytes: int = 0) -> _T:
        """F.linear saves its input for the weight gradient; autocast saves bf16 copies of input and weight;
        bitsandbytes' MatMul4Bit (`weight_bytes=-1`) saves only the packed weight (dequantized in backward)."""
        p = self.s.precision
        out = self.new(name, n_out, p.compute, x.grad or trainable)
        if weight_bytes < 0:
            return out
        if p.mixed:
            x = self.cast(x, 2, name)  # a bf16 copy per call (autocast caches weights, never activations)
            if x.grad and (weight_bytes or p.params) != 2:
                self.saved[f"{name}.weight>bf16"] = n_in * n_out * 2
        if trainable:
            self.save(x)
        return out

    def norm(self, x: _T, name: str, trainable: bool) -> _T:
        """LlamaRMSNorm: x.float() -> pow/mean/rsqrt -> x * rstd -> .to(input dtype) -> weight * normed."""
        h = self.s.arch.hidden
        if x.grad:
            self.save(self.cast(x, 4, name))  # pow and the rstd product keep the fp32 input
            self.saved[f"{name}.rstd"] = self.s.tokens * 4
        if trainable:
            self.save(self.new(f"{name}.normed", h, x.nbytes, True))
        return self.new(name, h, max(x.nbytes, self.s.precision.params), x.grad or trainable)

    def dropout(self, x: _T, name: str, p: float) -> _T:
        if p <= 0:
            return x
        if x.grad:  # CUDA's fused dropout keeps a bool mask; the CPU one a scaled mask in the input's dtype
            self.saved[f"{name}.mask"] = x.numel * (1 if self.s.cuda else x.nbytes)
        return replace(x, name=name)

    def proj(self, x: _T, layer: int, kind: str) -> _T:
        """A projection: the base linear (trained, frozen or NF4), plus peft's LoRA branch if targeted."""
        s, (n_in, n_out) = self.s, self.s.arch.linears()[kind]
        name = f"{layer}.{kind}"
        out = self.linear(x, name, n_in, n_out, trainable=s.lora is None, weight_bytes=-1 if s.nf4 else 0)
        if s.lora is None or kind not in s.lora.targets:
            return out
        adapter = s.precision.adapters
        x = self.cast(x, adapter, f"{name}.lora")  # peft casts the input to the adapter dtype
        x = self.dropout(x, f"{name}.lora_dropout", s.lora.dropout)
        a = self.linear(x, f"{name}.lora_A", n_in, s.lora.r, trainable=True, weight_bytes=adapter)
        self.linear(a, f"{name}.lora_B", s.lora.r, n_out, trainable=True, weight_bytes=adapter)
        return replace(out, name=f"{name}+lora", grad=True)

    def rope(self, x: _T) -> _T:
        """q * cos + rotate_half(q) * sin: saves cos and sin (one (length, head_dim) pair shared by all layers)."""
        s = self.s
        if x.grad:
            for name in ("cos", "sin"):
                self.saved[name] = s.length * s.arch.head_dim * s.precision.params
        return replace(x, name=f"{x.name}.rope", nbytes=max(x.nbytes, s.precision.params))

    def attention(self, q: _T, k: _T, v: _T, layer: int) -> _T:
        """sdpa_attention_forward: GQA k/v are repeated when a mask is passed; the fused kernel (flash, or
        memory-efficient with a mask) saves q, k, v, out, logsumexp and the bias that torch builds from the bool
        mask (per call, in the query dtype; its last dim padded to 16 on CUDA)."""
        s, a = self.s, self.s.arch
        rep = a.heads // a.kv_heads
        feats = a.kv_heads * a.head_dim
        if s.padded and rep > 1:  # repeat_kv: a copy (kv_heads > 1) or a stride-0 view of the same storage
            feats = a.heads * a.head_dim
            if a.kv_heads > 1:
                k, v = (replace(t, name=f"{t.name}.rep", numel=s.tokens * feats) for t in (k, v))
        inputs = [q, k, v]
        if s.precision.mixed:  # sdpa runs in bf16: copies of the fp32 inputs (materialising any view)
            inputs = [
                t if t.nbytes == 2 else _T(f"{t.name}>bf16", s.tokens * f, 2, t.grad)
                for t, f in zip(inputs, (a.heads * a.head_dim, feats, feats), strict=True)
            ]
        grad = any(t.grad for t in inputs)
        out = self.new(f"{layer}.attn", a.heads * a.head_dim, inputs[0].nbytes, grad)
        if not grad:
            return out
        for t in (*inputs, out):  # out is laid out (b, s, heads, d): it is also o_proj's input
            self.save(t)
        lse_len = 32 * math.ceil(s.length / 32) if s.cuda and s.padded else s.length
        self.saved[f"{layer}.lse"] = s.batch * a.heads * lse_len * 4
        if s.padded:
            key_len = 16 * math.ceil(s.length / 16) if s.cuda else s.length
            self.saved[f"{layer}.mask"] = s.batch * s.length * key_len * inputs[0].nbytes
        return out

    def layer(self, x: _T, i: int) -> _T:
        """One LlamaDecoderLayer."""
        full = self.s.lora is None
        h = self.norm(x, f"{i}.input_layernorm", full)
        q, k, v = (self.proj(h, i, kind) for kind in ("q_proj", "k_proj", "v_proj"))
        attn = self.attention(self.rope(q), self.rope(k), v, i)
        o = self.proj(attn, i, "o_proj")
        x = self.new(f"{i}.residual", self.s.arch.hidden, max(x.nbytes, o.nbytes), x.grad or o.grad)
        h = self.norm(x, f"{i}.post_attention_layernorm", full)
        gate, up = self.proj(h, i, "gate_proj"), self.proj(h, i, "up_proj")
        if gate.grad:
            self.save(gate)  # SiLU keeps its input
        act = replace(gate, name=f"{i}.act")
        if up.grad:
            self.save(act)
        if act.grad:
            self.save(up)
        down = self.proj(replace(act, name=f"{i}.act*up", grad=act.grad or up.grad), i, "down_proj")
        return self.new(f"{i}.output", self.s.arch.hidden, max(x.nbytes, down.nbytes), x.grad or down.grad)

    def head(self, x: _T) -> None:
        """Final norm, `score` (after its dropout) or `lm_head`, and the loss on `.float()` logits."""
        s, full = self.s, self.s.lora is None
        h = self.norm(x, "norm", full)
        if s.causal_lm:
            logits = self.linear(h, "lm_head", s.arch.hidden, s.arch.vocab, trainable=full)
            classes = s.arch.vocab
        else:
            h = self.dropout(h, "head_dropout", s.head_dropout)
            logits = self.linear(h, "score", s.arch.hidden, s.num_labels, trainable=True)
            classes = s.num_labels
        if logits.grad:
            self.saved["log_softmax"] = s.tokens * classes * 4  # fp32: the loss upcasts the logits
            self.saved["target"] = s.tokens * 8 + 4  # int64 labels + total_weight


def activation_bytes(s: Setup) -> tuple[int, int, int]:
    """(saved by embedding + decoder layers, saved by norm + head + loss, saved by one non-first layer).

    With checkpointing each layer keeps only its input (hidden states), and is recomputed in backward.
    """
    walk = _Walk(s)
    if s.lora is None:
        walk.saved["input_ids"] = s.tokens * 8  # the embedding's backward indexes its gradient
    x = walk.new("embed", s.arch.hidden, s.precision.params, s.lora is None)
    one_layer = 0
    for i in range(s.arch.layers):
        before = dict(walk.saved)
        out = walk.layer(x, i)
        added = sum(v for k, v in walk.saved.items() if k not in before)
        if i > 0:
            one_layer = max(one_layer, added)
        if s.checkpointing:
            walk.saved = before
            walk.save(x)  # non-reentrant checkpoint: the layer's positional input
        x = out
    body = sum(walk.saved.values())
    walk.saved = {}
    walk.head(x)
    return body, sum(walk.saved.values()), one_layer


# ---------------------------------------------------------------------------------------------------- the plan


def plan_setup(s: Setup) -> MemoryPlan:
    """Bytes per component of one training step of `s` on one device."""
    n = count_params(s)
    p, a = s.precision, s.arch
    notes: list[str] = []
    if s.nf4:
        quantized = a.layers * sum(nf4_bytes(i * o, s.double_quant) for i, o in a.linears().values())
        weights = quantized + (n.base - n.projections) * 2  # embeddings, norms and head stay bf16
        notes.append("NF4 projections; bitsandbytes leaves embeddings, norms and the head in bf16")
    else:
        weights = n.base * p.params
    trained = n.trainable * p.params if s.lora is None else n.adapters * p.adapters
    adapters = 0 if s.lora is None else trained
    gradients = trained
    optimizer = 2 * trained + (0 if s.cuda else 4 * n.trainable_tensors)  # + AdamW's step: a CPU scalar each
    body, logits, one_layer = activation_bytes(s)
    tokens_vocab = s.tokens * a.vocab if s.causal_lm else 0
    # beyond the saved fp32 log-softmax: forward, bf16 logits + their fp32 upcast (6 B); loss backward, the fp32
    # gradients of the log-softmax output and input (8 B), the larger
    logits_peak = tokens_vocab * 8
    recompute = one_layer if s.checkpointing else 0
    dequant = max(i * o for i, o in a.linears().values()) * 2 if s.nf4 else 0
    transient = max(logits_peak, recompute) + dequant
    distributed = 0
    if s.devices > 1 and s.fsdp:  # full shard; each decoder layer an FSDP unit, the rest the root unit
        root = n.base - a.layers * n.layer
        weights, gradients, optimizer = (math.ceil(x / s.devices) for x in (weights, gradients, optimizer))
        distributed = (2 * root + 3 * n.layer) * p.params  # root + 2 gathered layers + 1 layer's full grads
        notes.append(f"FSDP full shard over {s.devices} devices, one unit per decoder layer")
    elif s.devices > 1:
        distributed = gradients  # DDP's gradient buckets
        notes.append(f"DDP over {s.devices} devices: every device holds the whole model")
    kv = 2 * a.layers * a.kv_heads * a.head_dim * s.eval_batch * s.eval_tokens * p.compute
    parts = (weights, adapters, gradients, optimizer, body, logits, transient, distributed, kv, one_layer)
    return MemoryPlan(s, n, *parts, notes=notes)


def plan_generation(s: Setup, batch: int, prompt: int, new_tokens: int) -> int:
    """Peak bytes of `generate` (no grad): weights + adapters + KV cache of `batch` x (prompt + new) tokens + the
    prefill's largest short-lived tensors (gate, up and their product, the sdpa bias; last-token logits)."""
    plan = plan_setup(s)
    a, c = s.arch, s.precision.compute
    kv = 2 * a.layers * a.kv_heads * a.head_dim * batch * (prompt + new_tokens) * c
    prefill = batch * prompt * (3 * a.intermediate + 2 * a.hidden + prompt) * c
    return plan.weights + plan.adapters + kv + prefill + batch * a.vocab * 4

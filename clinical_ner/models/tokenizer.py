"""Tokenizers of each Llama family's kind, trained locally on corpus text and cached on disk.

`sentencepiece_bpe` mimics Llama 2 (SentencePiece BPE with byte fallback, `▁` metaspace, `<s>`/`</s>`/`<unk>`);
`byte_level_bpe` mimics Llama 3.x (byte-level BPE behind a GPT-4-like regex, `<|begin_of_text|>` etc., no unk).
Both add BOS (never EOS) on encode, like the real checkpoints' tokenizers.
"""

from __future__ import annotations

import copy
import hashlib
import json
import logging
import shutil
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import Literal, get_args

from filelock import FileLock
from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, pre_tokenizers, processors, trainers
from transformers import AutoTokenizer, PreTrainedTokenizerBase, PreTrainedTokenizerFast

from clinical_ner.cache.manifest import broken_file, file_records
from clinical_ner.errors import UserError
from clinical_ner.files.atomic import atomic_write_json

log = logging.getLogger(__name__)

TokenizerKind = Literal["sentencepiece_bpe", "byte_level_bpe"]

# Bump when the training recipe changes so that stale cached tokenizers are not reused.
FORMAT_VERSION = 1
CACHE_MANIFEST = "clinical_ner_cache.json"  # in a cached tokenizer folder: size and sha256 of its files
MODEL_MAX_LENGTH = 1_000_000_000

SP_UNK, SP_BOS, SP_EOS = "<unk>", "<s>", "</s>"
BL_BOS, BL_EOS = "<|begin_of_text|>", "<|end_of_text|>"
BL_CHAT = ["<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"]
BYTE_TOKENS = [f"<0x{b:02X}>" for b in range(256)]

# SentencePiece with split_by_unicode_script/split_digits (as Llama 2 was trained): letters, single digits and
# punctuation runs are separate pieces; `▁` (the space) may only lead a piece.
SP_SPLIT = r"▁?[\p{L}\p{M}]+|\p{N}|▁?[^\p{L}\p{M}\p{N}\s▁]+|[\s▁]+"
# Llama 3's regex except that only a space (not any punctuation mark) may be glued before letters, so that
# "(PSA" is two pieces: in PharmaCoNER 712 of 7,619 mentions follow a punctuation mark directly.
BL_SPLIT = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)| ?[\p{L}\p{M}]+|\p{N}{1,3}| ?[^\s\p{L}\p{M}\p{N}]+[\r\n]*"
    r"|\s*[\r\n]+|\s+(?!\S)|\s+"
)
# The real Llama 3 pre-split, kept to measure what the deviation above buys (see clinical_ner/analysis/roundtrip.py).
LLAMA3_SPLIT = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*"
    r"|\s*[\r\n]+|\s+(?!\S)|\s+"
)


def train_tokenizer(kind: TokenizerKind, vocab_size: int, texts: Iterable[str]) -> PreTrainedTokenizerFast:
    """Train a tokenizer of `kind` with at most `vocab_size` entries (specials and byte tokens included).

    Fewer entries only when the texts run out of pairs to merge. BOS is prepended on encode, no EOS is
    appended; padding is on the right.
    """
    if kind not in get_args(TokenizerKind):
        raise UserError(
            f"unknown tokenizer kind {kind!r}; expected one of {', '.join(get_args(TokenizerKind))}"
        )
    if kind == "sentencepiece_bpe":
        return _train_sentencepiece_bpe(vocab_size, texts)
    return _train_byte_level_bpe(vocab_size, texts)


def _train_sentencepiece_bpe(vocab_size: int, texts: Iterable[str]) -> PreTrainedTokenizerFast:
    reserved = 3 + len(BYTE_TOKENS)
    if vocab_size <= reserved + 1:
        raise UserError(f"vocab_size {vocab_size} too small for sentencepiece_bpe (needs > {reserved + 1})")
    pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="first", split=True),
            pre_tokenizers.Split(Regex(SP_SPLIT), behavior="isolated"),
        ]
    )
    draft = Tokenizer(models.BPE(unk_token=SP_UNK))
    draft.pre_tokenizer = pre_tokenizer
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size - len(BYTE_TOKENS),
        special_tokens=[SP_UNK, SP_BOS, SP_EOS],
        show_progress=False,
    )
    draft.train_from_iterator(texts, trainer=trainer)

    # Rebuild with the 256 byte tokens as ordinary vocabulary at ids 3..258 (Llama 2's layout): added as
    # special tokens instead, they would be dropped by decode(skip_special_tokens=True).
    trained = json.loads(draft.to_str())["model"]
    learned = sorted(trained["vocab"].items(), key=lambda item: item[1])
    clash = {token for token, _ in learned} & set(BYTE_TOKENS)
    if clash:
        raise RuntimeError(f"learned tokens collide with byte tokens: {sorted(clash)[:3]}")
    order = [token for token, _ in learned[:3]] + BYTE_TOKENS + [token for token, _ in learned[3:]]
    vocab = {token: index for index, token in enumerate(order)}
    merges = [
        tuple(merge) if isinstance(merge, list) else tuple(merge.split(" ", 1)) for merge in trained["merges"]
    ]
    backend = Tokenizer(
        models.BPE(vocab=vocab, merges=merges, unk_token=SP_UNK, fuse_unk=True, byte_fallback=True)
    )
    backend.pre_tokenizer = pre_tokenizer
    backend.decoder = decoders.Sequence(
        [decoders.Replace("▁", " "), decoders.ByteFallback(), decoders.Fuse(), decoders.Strip(" ", 1, 0)]
    )
    backend.add_special_tokens(
        [AddedToken(t, special=True, normalized=False) for t in (SP_UNK, SP_BOS, SP_EOS)]
    )
    backend.post_processor = _bos_template(SP_BOS, vocab[SP_BOS])
    # Pad with <unk>: byte fallback means it never occurs in encoded text, and unlike </s> it is never a
    # training target (a seq2seq collator masking pad ids would otherwise hide the EOS it must learn).
    return _wrap(backend, bos=SP_BOS, eos=SP_EOS, pad=SP_UNK, unk=SP_UNK)


def _train_byte_level_bpe(
    vocab_size: int, texts: Iterable[str], pattern: str = BL_SPLIT
) -> PreTrainedTokenizerFast:
    specials = [BL_BOS, BL_EOS, *BL_CHAT]
    alphabet = pre_tokenizers.ByteLevel.alphabet()
    if vocab_size <= len(alphabet) + len(specials):
        raise UserError(f"vocab_size {vocab_size} too small for byte_level_bpe (needs > {len(alphabet) + 5})")
    backend = Tokenizer(models.BPE())
    backend.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(pattern), behavior="isolated"),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    backend.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size - len(specials), initial_alphabet=alphabet, show_progress=False
    )
    backend.train_from_iterator(texts, trainer=trainer)
    # Specials go after the learned vocabulary, as in Llama 3 (128000 onwards).
    backend.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in specials])
    bos_id = backend.token_to_id(BL_BOS)
    backend.post_processor = processors.Sequence(
        [processors.ByteLevel(trim_offsets=False), _bos_template(BL_BOS, bos_id)]
    )
    # Pad with EOS (the usual Llama 3 practice): it never occurs in encoded text and padding is masked anyway.
    return _wrap(backend, bos=BL_BOS, eos=BL_EOS, pad=BL_EOS, unk=None, extra=BL_CHAT)


def _bos_template(bos: str, bos_id: int) -> processors.TemplateProcessing:
    return processors.TemplateProcessing(
        single=f"{bos} $A", pair=f"{bos} $A {bos} $B", special_tokens=[(bos, bos_id)]
    )


def _wrap(
    backend: Tokenizer, bos: str, eos: str, pad: str, unk: str | None, extra: list[str] | None = None
) -> PreTrainedTokenizerFast:
    kwargs = {"unk_token": unk} if unk else {}
    if extra:
        kwargs["extra_special_tokens"] = extra
    return PreTrainedTokenizerFast(
        tokenizer_object=backend,
        bos_token=bos,
        eos_token=eos,
        pad_token=pad,
        padding_side="right",
        model_max_length=MODEL_MAX_LENGTH,
        clean_up_tokenization_spaces=False,
        **kwargs,
    )


def cache_key(kind: TokenizerKind, vocab_size: int, texts: list[str]) -> str:
    """Hex sha256 of the recipe (kind, vocab size, format version) and the training texts."""
    digest = hashlib.sha256(json.dumps([kind, vocab_size, FORMAT_VERSION]).encode())
    for text in texts:
        data = text.encode("utf-8")
        # Length prefix so that ["ab", "c"] and ["a", "bc"] hash differently.
        digest.update(len(data).to_bytes(8, "little"))
        digest.update(data)
    return digest.hexdigest()


def load_or_train_tokenizer(
    kind: TokenizerKind, vocab_size: int, texts: list[str], cache_dir: Path
) -> PreTrainedTokenizerFast:
    """Load the tokenizer cached for (kind, vocab_size, texts) under `cache_dir/tokenizers/`, or train and cache it.

    Safe against concurrent processes: one trains under a file lock, the others then load its result.
    """
    root = Path(cache_dir) / "tokenizers"
    root.mkdir(parents=True, exist_ok=True)
    folder = root / f"{kind}-{vocab_size}-{cache_key(kind, vocab_size, texts)[:12]}"
    with FileLock(str(folder) + ".lock"):
        if folder.is_dir() and not _intact(folder):
            shutil.rmtree(folder)
        if not folder.is_dir():
            trained = train_tokenizer(kind, vocab_size, texts)
            staging = Path(tempfile.mkdtemp(prefix=folder.name + ".", dir=root))
            try:
                trained.save_pretrained(staging)
                _check_same(trained, AutoTokenizer.from_pretrained(staging), texts)
                atomic_write_json(staging / CACHE_MANIFEST, {"files": file_records(staging)})
                staging.rename(folder)
            finally:
                shutil.rmtree(staging, ignore_errors=True)
    return AutoTokenizer.from_pretrained(folder)


def _intact(folder: Path) -> bool:
    """Whether a cached tokenizer folder holds the files its manifest promises (one line when not). A folder
    cached before manifests existed gets one, if it loads."""
    manifest = folder / CACHE_MANIFEST
    try:
        files = json.loads(manifest.read_text(encoding="utf-8"))["files"]
    except FileNotFoundError:
        try:
            AutoTokenizer.from_pretrained(folder)
        except Exception as err:  # any failure to load means the entry is damaged: it is retrained
            log.warning("cached tokenizer %s does not load (%s): training it again", folder, err)
            return False
        atomic_write_json(manifest, {"files": file_records(folder, skip=[CACHE_MANIFEST])})
        return True
    except (OSError, ValueError, KeyError, TypeError) as err:
        log.warning("cached tokenizer %s: unreadable manifest (%s): training it again", folder, err)
        return False
    why = broken_file(folder, files)
    if why is not None:
        log.warning("cached tokenizer %s: %s: training it again", folder, why)
    return why is None


def _check_same(trained: PreTrainedTokenizerFast, loaded: PreTrainedTokenizerFast, texts: list[str]) -> None:
    """Fail loudly if saving and reloading changed how text is encoded (e.g. a class that rebuilds its vocab)."""
    probes = [text[:2000] for text in texts[:20]] + ["Dosis  de 5-FU (龍) al 0,5%\n¿Ácido?"]
    for probe in probes:
        if trained(probe)["input_ids"] != loaded(probe)["input_ids"]:
            raise RuntimeError(
                f"reloaded tokenizer ({type(loaded).__name__}) encodes differently from the trained one"
            )
    if len(trained) != len(loaded) or loaded.pad_token_id != trained.pad_token_id:
        raise RuntimeError("reloaded tokenizer differs in vocabulary size or pad token")


def tokenizer_fingerprint(tokenizer: PreTrainedTokenizerFast) -> str:
    """Hex sha256 of a fast tokenizer's full definition (vocabulary, merges, pre-tokenizer, specials)."""
    digest = hashlib.sha256(tokenizer.backend_tokenizer.to_str().encode("utf-8"))
    specials = [tokenizer.bos_token_id, tokenizer.eos_token_id, tokenizer.pad_token_id, len(tokenizer)]
    digest.update(json.dumps(specials).encode())
    return digest.hexdigest()


def standalone_tokenizer(tokenizer: PreTrainedTokenizerBase, max_length: int) -> PreTrainedTokenizerBase:
    """A copy of a token classifier's tokenizer for use without this project (`transformers.pipeline`).

    Every training window was BOS + sub-tokens, so the copy prepends BOS on its own, also where the checkpoint's
    tokenizer does not (SmolLM2): the pipeline then feeds what training fed, and an empty input is [BOS] instead
    of a zero-length sequence that crashes the model. `model_max_length` becomes the training window, so the
    pipeline's `stride=` cuts long texts into windows of the length the model was trained on.
    """
    copied = copy.deepcopy(tokenizer)
    copied.model_max_length = max_length
    bos = copied.bos_token_id
    if bos is None or copied("")["input_ids"][:1] == [bos]:
        return copied
    backend = copied.backend_tokenizer
    template = _bos_template(copied.bos_token, bos)
    # after the existing post-processor (e.g. ByteLevel offsets), so only BOS is added
    backend.post_processor = (
        processors.Sequence([backend.post_processor, template]) if backend.post_processor else template
    )
    if copied("")["input_ids"] != [bos] or copied("a")["input_ids"].count(bos) != 1:
        raise RuntimeError(f"cannot make {type(tokenizer).__name__} prepend its BOS token")
    return copied

"""The tokenizer a run uses: trained locally for tiny scale, the checkpoint's own for paper scale."""

from __future__ import annotations

from pathlib import Path

from transformers import AutoTokenizer, PreTrainedTokenizerBase

from clinical_ner.config import ModelConfig, ScaleConfig
from clinical_ner.errors import UserError
from clinical_ner.models.tokenizer import load_or_train_tokenizer
from clinical_ner.models.weights import checkpoint_source


def make_tokenizer(
    model_cfg: ModelConfig, scale: ScaleConfig, texts: list[str], cache: Path, instruct: bool = False
) -> PreTrainedTokenizerBase:
    """Tiny: a tokenizer of the family's kind trained once on `texts` (cached by hash). Paper: from_pretrained."""
    if not scale.pretrained:
        return load_or_train_tokenizer(model_cfg.tokenizer_kind, scale.vocab_size, texts, cache)
    source = checkpoint_source(model_cfg, instruct)
    try:
        tokenizer = AutoTokenizer.from_pretrained(source, trust_remote_code=False)
    except OSError as err:
        raise UserError(
            f"cannot load tokenizer '{source}' ({str(err).splitlines()[0]}); set model.path=DIR to a local copy"
        ) from None
    if tokenizer.pad_token is None:  # Llama checkpoints ship without one; padding is masked anyway
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer

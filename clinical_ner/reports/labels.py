"""Display names and the paper's row order for approaches, model families and continual-pretraining corpora."""

from __future__ import annotations

APPROACH_NAMES = {"tokencls": "Token classification", "seq2seq": "Seq2seq"}
FAMILY_NAMES = {
    "llama2": "Llama 2",
    "llama3": "Llama 3",
    "llama3_1": "Llama 3.1",
    "llama3_2": "Llama 3.2",
    "smollm2": "SmolLM2-135M",
}
CORPUS_NAMES = {
    "none": "Not continued",
    "bilingual": "Spanish + English",
    "en": "English",
    "es": "Spanish",
}
APPROACH_ORDER = ("tokencls", "seq2seq")
FAMILY_ORDER = tuple(FAMILY_NAMES)
CORPUS_ORDER = tuple(CORPUS_NAMES)  # the paper's token-classification row order


def approach_name(approach: str) -> str:
    """`tokencls` -> "Token classification"; unknown names are shown as they are."""
    return APPROACH_NAMES.get(approach, approach)


def family_name(family: str) -> str:
    """`llama3_1` -> "Llama 3.1" (the paper's Base model column)."""
    return FAMILY_NAMES.get(family, family)


def corpus_name(corpus: str) -> str:
    """`bilingual` -> "Spanish + English" (the paper's Language column)."""
    return CORPUS_NAMES.get(corpus, corpus)


def rank(value: str, order: tuple[str, ...]) -> tuple[int, str]:
    """Sort key: known values in `order`, then unknown ones alphabetically."""
    return (order.index(value), "") if value in order else (len(order), value)

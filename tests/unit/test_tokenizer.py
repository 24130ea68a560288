"""Locally trained tokenizers of each Llama kind: determinism, cache, save/load, byte fallback, BOS, padding."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

import clinical_ner.models.tokenizer as tokenizer_module
from clinical_ner.errors import UserError
from clinical_ner.models.tokenizer import (
    BYTE_TOKENS,
    load_or_train_tokenizer,
    train_tokenizer,
)

KINDS = ("sentencepiece_bpe", "byte_level_bpe")
VOCAB = 600
_SENTENCES = [
    "Paciente de 54 años con hipercalcemia tratada con ácido zoledrónico (Zometa®) 4 mg/iv.",
    "La analítica mostró PTH 12 pg/ml, calcio 11,2 mg/dl y fosfatasa alcalina normal.",
    "Se inició tratamiento con omeprazol, paracetamol 1 g/8 h y enoxaparina 40 mg/24 h.",
    "¿Presentaba alergias? No se conocen alergias medicamentosas; niega hábitos tóxicos.",
    "En la inmunohistoquímica: CD20+, CD3-, Ki-67 del 80%, proteína S-100 negativa.",
]
TEXTS = [" ".join(_SENTENCES[i:] + _SENTENCES[:i]) + f"\nCaso {i}." for i in range(len(_SENTENCES))] * 4
PROBES = ["El  paciente recibió 5-FU (ácido zoledrónico) al 0,5%.", "Vitamina B12\ty ß-caroteno\n¡Alta!"]


@pytest.fixture(scope="module", params=KINDS)
def kind(request) -> str:
    return request.param


@pytest.fixture(scope="module")
def trained(kind):
    return train_tokenizer(kind, VOCAB, TEXTS)


def test_vocab_size_and_specials(kind, trained) -> None:
    assert 300 < len(trained) <= VOCAB
    assert trained.padding_side == "right"
    assert trained.model_max_length >= 1_000_000
    assert trained.pad_token_id is not None
    if kind == "sentencepiece_bpe":
        assert (trained.unk_token, trained.bos_token, trained.eos_token) == ("<unk>", "<s>", "</s>")
        assert trained.convert_tokens_to_ids(["<unk>", "<s>", "</s>"]) == [0, 1, 2]
        assert trained.pad_token == "<unk>"
    else:
        assert trained.unk_token is None
        assert (trained.bos_token, trained.eos_token, trained.pad_token) == (
            "<|begin_of_text|>",
            "<|end_of_text|>",
            "<|end_of_text|>",
        )
        for token in ("<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"):
            assert token in trained.all_special_tokens


def test_deterministic(kind, trained) -> None:
    again = train_tokenizer(kind, VOCAB, TEXTS)
    assert again.backend_tokenizer.to_str() == trained.backend_tokenizer.to_str()


def test_bos_added_once_and_no_eos(trained) -> None:
    batch = trained(PROBES + [""])["input_ids"]
    for ids in batch:
        assert ids[0] == trained.bos_token_id
        assert ids.count(trained.bos_token_id) == 1
        assert trained.eos_token_id not in ids
    assert batch[-1] == [trained.bos_token_id]


def test_pad_never_in_text(trained) -> None:
    for text in TEXTS + PROBES + ["龍 ∑ 🙂"]:
        assert trained.pad_token_id not in trained(text, add_special_tokens=False)["input_ids"]
    padded = trained(PROBES, padding=True)
    lengths = [sum(mask) for mask in padded["attention_mask"]]
    shorter = lengths.index(min(lengths))
    assert min(lengths) < max(lengths)
    # Right padding: the shorter row ends with pad ids that the attention mask hides.
    assert padded["input_ids"][shorter][-1] == trained.pad_token_id
    assert padded["attention_mask"][shorter][-1] == 0


def test_decode_round_trips_text(trained) -> None:
    for text in PROBES + ["Dosis de 龍 y ∑ en 🙂"]:
        ids = trained(text)["input_ids"]
        assert trained.decode(ids, skip_special_tokens=True) == text


def test_sentencepiece_byte_fallback() -> None:
    tok = train_tokenizer("sentencepiece_bpe", VOCAB, TEXTS)
    ids = tok("龍", add_special_tokens=False)["input_ids"]
    pieces = tok.convert_ids_to_tokens(ids)
    assert [p for p in pieces if p != "▁"] == ["<0xE9>", "<0xBE>", "<0x8D>"]
    assert tok.unk_token_id not in ids
    assert tok.decode(ids, skip_special_tokens=True) == "龍"
    # Byte tokens are ordinary vocabulary at Llama 2's ids, so skip_special_tokens keeps them.
    assert tok.convert_tokens_to_ids(BYTE_TOKENS) == list(range(3, 259))
    assert not set(tok.convert_tokens_to_ids(BYTE_TOKENS)) & set(tok.all_special_ids)


def test_cache_reuse_and_save_load(kind, trained, tmp_path: Path, monkeypatch) -> None:
    first = load_or_train_tokenizer(kind, VOCAB, TEXTS, tmp_path)
    folders = [p for p in (tmp_path / "tokenizers").iterdir() if p.is_dir()]
    assert len(folders) == 1 and folders[0].name.startswith(f"{kind}-{VOCAB}-")
    assert len(folders[0].name.rsplit("-", 1)[1]) == 12

    def no_training(*args, **kwargs):
        raise AssertionError("the cached tokenizer should have been loaded, not retrained")

    monkeypatch.setattr(tokenizer_module, "train_tokenizer", no_training)
    second = load_or_train_tokenizer(kind, VOCAB, TEXTS, tmp_path)
    for text in PROBES + TEXTS[:2]:
        expected = trained(text, return_offsets_mapping=True)
        for loaded in (first, second):
            got = loaded(text, return_offsets_mapping=True)
            assert got["input_ids"] == expected["input_ids"]
            assert got["offset_mapping"] == expected["offset_mapping"]
    assert second.pad_token_id == trained.pad_token_id
    assert second.bos_token_id == trained.bos_token_id
    assert second.padding_side == "right"
    assert len(second) == len(trained)


def test_concurrent_callers_share_one_cache_entry(tmp_path: Path) -> None:
    with ThreadPoolExecutor(max_workers=2) as pool:
        results = list(
            pool.map(lambda _: load_or_train_tokenizer("sentencepiece_bpe", VOCAB, TEXTS, tmp_path), range(2))
        )
    assert results[0](PROBES)["input_ids"] == results[1](PROBES)["input_ids"]
    entries = sorted(p.name for p in (tmp_path / "tokenizers").iterdir())
    assert len([name for name in entries if not name.endswith(".lock")]) == 1


def test_cache_key_depends_on_texts(tmp_path: Path) -> None:
    load_or_train_tokenizer("byte_level_bpe", VOCAB, TEXTS, tmp_path)
    load_or_train_tokenizer("byte_level_bpe", VOCAB, TEXTS[:-1], tmp_path)
    assert len([p for p in (tmp_path / "tokenizers").iterdir() if p.is_dir()]) == 2


def test_user_errors() -> None:
    with pytest.raises(UserError, match="unknown tokenizer kind"):
        train_tokenizer("wordpiece", VOCAB, TEXTS)  # type: ignore[arg-type]
    with pytest.raises(UserError, match="too small"):
        train_tokenizer("sentencepiece_bpe", 100, TEXTS)

"""A saved token-classification run works in `transformers.pipeline`, and reproduces `clinical_ner.predict`
where their decoding rules coincide (label position `first`, `aggregation_strategy="first"`, one sentence of
space-separated words per call); long texts go through the pipeline's `stride=` windows."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from composing import MICRO, compose_train
from transformers import AutoTokenizer, LlamaConfig, LlamaForTokenClassification, pipeline

from clinical_ner.approaches.tokencls.tagging import WORD_RE, split_sentences, strip_span
from clinical_ner.data.synthetic import synthetic_splits
from clinical_ner.data.types import Document
from clinical_ner.models.tokenizer import standalone_tokenizer, train_tokenizer
from clinical_ner.predict import tag_documents
from clinical_ner.run.pipeline import run

CONF = Path(__file__).resolve().parents[2] / "conf"
TINY = MICRO
MAX_LENGTH = 64


@pytest.fixture(scope="module", params=["llama2", "llama3_2"])
def run_dir(request, tmp_path_factory) -> Path:
    """A one-step synthetic run labelling first sub-tokens: still near its random init, so it tags many words
    with all kinds of B-/I-/O sequences, which is what a comparison of two decoders needs."""
    out = tmp_path_factory.mktemp(f"run-{request.param}")
    overrides = [
        f"model={request.param}",
        "data=synthetic",
        "logger=none",
        "trainer.enable_progress_bar=false",
        "trainer.threads=1",
        "trainer.max_steps=1",
        "trainer.precision=32",  # predict and the pipeline then compute the same fp32 logits
        "approach.label_position=first",
        "approach.ill_formed=begin",
        f"approach.max_length={MAX_LENGTH}",
        "approach.stride=16",
        "data.eval_limit=2",
        f"output_dir={out}",
        f"cache_dir={tmp_path_factory.getbasetemp() / 'cache'}",
        *TINY,
    ]
    train(overrides)
    return out


def train(overrides: list[str]) -> None:
    """A complete run through the entry point's `run`."""
    assert run(compose_train(overrides))["status"] == "complete"


def clean_sentences() -> list[str]:
    """Synthetic test sentences as space-separated letter-only words: the pipeline's word heuristic (a word
    starts after a space) then finds the same words as `predict` (`\\w+|[^\\w\\s]`)."""
    sentences = []
    for doc in synthetic_splits()["test"]:
        for start, end in split_sentences(doc.text):
            words = [w for w in WORD_RE.findall(doc.text[start:end]) if w.isalpha()]
            if words:
                sentences.append(" ".join(words))
    return sentences


def pipeline_spans(entities: list[dict], text: str) -> set[tuple[int, int, str]]:
    """Pipeline entities as (start, end, type) with surrounding whitespace stripped, as `predict` writes them
    (a sub-token's offsets include the space before it)."""
    spans = set()
    for entity in entities:
        start, end = strip_span(text, entity["start"], entity["end"])
        if start < end:
            spans.add((start, end, entity["entity_group"]))
    return spans


@pytest.mark.slow
def test_pipeline_reproduces_predict_with_first_subtoken_labels(run_dir: Path) -> None:
    folder = run_dir / "model"
    tagger = pipeline("token-classification", model=str(folder), aggregation_strategy="first")
    docs = [Document(f"s{i}", text) for i, text in enumerate(clean_sentences())]
    predicted = tag_documents(folder, docs, batch_size=1)
    total = 0
    for doc in docs:
        expected = {(s.start, s.end, s.type) for s in predicted[doc.id]}
        assert pipeline_spans(tagger(doc.text), doc.text) == expected, doc.text
        total += len(expected)
    assert len(docs) > 50 and total > 20  # many sentences, many predicted mentions: not a vacuous match


@pytest.mark.slow
def test_saved_tokenizer_is_pipeline_ready(run_dir: Path) -> None:
    folder = run_dir / "model"
    tokenizer = AutoTokenizer.from_pretrained(folder)
    assert tokenizer.model_max_length == MAX_LENGTH  # the training window, BOS included
    assert tokenizer("")["input_ids"] == [tokenizer.bos_token_id]
    assert json.loads((folder / "clinical_ner.json").read_text())["stride"] == 16
    tagger = pipeline("token-classification", model=str(folder), aggregation_strategy="first")
    assert tagger("") == []


@pytest.mark.slow
def test_long_text_needs_stride(run_dir: Path) -> None:
    """Past model_max_length the pipeline truncates silently; with `stride=` it tags the whole text."""
    folder = run_dir / "model"
    text = " ".join(clean_sentences()[:40])
    tokenizer = AutoTokenizer.from_pretrained(folder)
    assert len(tokenizer(text, verbose=False)["input_ids"]) > 4 * MAX_LENGTH
    first_window_end = tokenizer(text, truncation=True, return_offsets_mapping=True)["offset_mapping"][-1][1]
    tagger = pipeline("token-classification", model=str(folder), aggregation_strategy="first")
    truncated = tagger(text)
    windowed = tagger(text, stride=16)
    assert max(e["end"] for e in truncated) <= first_window_end
    assert max(e["end"] for e in windowed) > 3 * first_window_end


def bos_less_tokenizer():
    """A tokenizer that, like SmolLM2's, has a BOS token but does not prepend it."""
    tokenizer = train_tokenizer("byte_level_bpe", 300, ["Paciente con fiebre y dolor abdominal."] * 20)
    tokenizer.backend_tokenizer.post_processor = None
    assert tokenizer("")["input_ids"] == []
    return tokenizer


def test_standalone_tokenizer_prepends_bos_once() -> None:
    raw = bos_less_tokenizer()
    ready = standalone_tokenizer(raw, 128)
    text = "Paciente con fiebre"
    before, after = raw(text, return_offsets_mapping=True), ready(text, return_offsets_mapping=True)
    assert after["input_ids"] == [ready.bos_token_id, *before["input_ids"]]
    assert after["offset_mapping"][1:] == before["offset_mapping"]
    assert ready.model_max_length == 128 and raw.model_max_length != 128  # a copy; the run's is untouched
    # a tokenizer that already prepends BOS keeps doing it once
    again = standalone_tokenizer(ready, 128)
    assert again(text)["input_ids"] == after["input_ids"]


def test_empty_input_runs_with_a_bos_less_checkpoint_tokenizer(tmp_path: Path) -> None:
    """The crash reported on a saved SmolLM2 run: an empty input ("" or a blank line in a list of lines)
    becomes a zero-length sequence, which LlamaAttention cannot reshape; with BOS it is one token."""
    tokenizer = standalone_tokenizer(bos_less_tokenizer(), 128)
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=1,
        num_attention_heads=2,
        num_key_value_heads=2,
        num_labels=3,
        id2label={0: "O", 1: "B-X", 2: "I-X"},
        label2id={"O": 0, "B-X": 1, "I-X": 2},
        is_causal=False,
    )
    LlamaForTokenClassification(config).save_pretrained(tmp_path)
    tokenizer.save_pretrained(tmp_path)
    tagger = pipeline("token-classification", model=str(tmp_path), aggregation_strategy="first")
    results = tagger(["Paciente con fiebre", "", "dolor"])
    assert len(results) == 3 and results[1] == []


@pytest.mark.slow
def test_text_generation_pipeline_answers_as_free_decoding(tmp_path: Path) -> None:
    """A seq2seq run's `model/` in `pipeline("text-generation")` with the prompt from its clinical_ner.json
    gives, greedily, the answer `predict` decodes freely (the schema constraint is what the pipeline lacks)."""
    from transformers import AutoModelForCausalLM

    from clinical_ner.approaches.seq2seq.inference import Seq2SeqDecoder
    from clinical_ner.approaches.seq2seq.prompt import PromptRenderer

    overrides = [
        "approach=seq2seq",
        "approach.decoding=free",
        "approach.max_new_tokens=16",
        "approach.val_limit=1",
        "data=synthetic",
        "data.train_limit=8",
        "data.eval_limit=1",
        "trainer.max_steps=1",
        "trainer.precision=32",
        "logger=none",
        "trainer.enable_progress_bar=false",
        "trainer.threads=1",
        f"output_dir={tmp_path}",
        f"cache_dir={tmp_path / 'cache'}",
        *TINY,
    ]
    train(overrides)
    folder = tmp_path / "model"
    settings = json.loads((folder / "clinical_ner.json").read_text())
    prompt = settings["prompt"]
    assert not prompt["chat"]  # tiny runs use the plain template (chat runs pass messages instead)
    generator = pipeline("text-generation", model=str(folder))
    tokenizer = AutoTokenizer.from_pretrained(folder)
    renderer = PromptRenderer(tokenizer, prompt["instruction"], prompt["user"], prompt["plain"], False)
    decoder = Seq2SeqDecoder(tokenizer, renderer.stop_ids, settings["types"], "free", 16, batch_size=1)
    model = AutoModelForCausalLM.from_pretrained(folder)
    sentences = clean_sentences()[:4]
    expected = decoder.answers(model, [renderer.prompt_ids(s) for s in sentences], sentences)
    for sentence, answer in zip(sentences, expected, strict=True):
        user = prompt["user"].replace("{text}", sentence)
        text = prompt["plain"].replace("{instruction}", prompt["instruction"]).replace("{user}", user)
        out = generator(text, max_new_tokens=16, do_sample=False, return_full_text=False)
        assert out[0]["generated_text"] == answer
    assert any(expected)  # the model wrote something: the comparison is not between two empty strings

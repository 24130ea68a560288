"""Seq2seq units: token-identical prompts with one BOS, answer-only loss, batched == sequential decoding,
constrained decoding validity, the parser under fuzzing, and the generative metric definitions."""

from __future__ import annotations

import json
import random

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from transformers import LlamaConfig, LlamaForCausalLM

from clinical_ner.approaches.seq2seq.datamodule import keep_empty, training_examples
from clinical_ner.approaches.seq2seq.decoding import (
    SchemaConstraint,
    TokenVocab,
    allowed_tokens,
    generate,
    shared_prompt_prefix,
)
from clinical_ner.approaches.seq2seq.grammar import DONE, START, SpanGrammar
from clinical_ner.approaches.seq2seq.metrics import Sample, generative_metrics
from clinical_ner.approaches.seq2seq.parsing import (
    anchor_entities,
    extract_items,
    normalize_type,
    parse_spans,
)
from clinical_ner.approaches.seq2seq.prompt import make_renderer
from clinical_ner.approaches.seq2seq.units import (
    TextUnit,
    make_units,
    offset_values,
    target_entities,
    to_json,
)
from clinical_ner.config import PromptConfig
from clinical_ner.data.synthetic import synthetic_splits
from clinical_ner.data.types import Span
from clinical_ner.models.tokenizer import train_tokenizer

torch.set_num_threads(1)
TYPES = ["DOSIS", "FARMACO", "SINTOMA"]
PHARMA = ["NORMALIZABLES", "NO_NORMALIZABLES", "PROTEINAS", "UNCLEAR"]
# a Llama-3-like chat template that writes BOS itself, the trap behind the original's double BOS
CHAT = (
    "{{ bos_token }}{% for m in messages %}<|start_header_id|>{{ m['role'] }}<|end_header_id|>\n\n"
    "{{ m['content'] }}<|eot_id|>{% endfor %}{% if add_generation_prompt %}"
    "<|start_header_id|>assistant<|end_header_id|>\n\n{% endif %}"
)
PROMPT = PromptConfig(
    instruction="Menciones ({type_names}) en JSON:\n{types}",
    type_descriptions={"DOSIS": "dosis"},
    format_lines={},
    user="{text}",
)


@pytest.fixture(scope="module", params=["byte_level_bpe", "sentencepiece_bpe"])
def tokenizer(request):
    return train_tokenizer(request.param, 700, [d.text for d in synthetic_splits()["train"][:60]])


@pytest.fixture(scope="module")
def docs():
    return synthetic_splits()["test"][:6]


def tiny_model(tokenizer, seed: int = 0) -> LlamaForCausalLM:
    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    return LlamaForCausalLM(config).eval()


@pytest.mark.parametrize("chat", [False, True])
def test_training_and_inference_prompts_are_token_identical_with_one_bos(tokenizer, docs, chat):
    if chat:
        tokenizer.chat_template = CHAT
    renderer = make_renderer(PROMPT, tokenizer, TYPES, instruct=chat)
    assert renderer.chat is chat
    for doc in docs:
        for unit in make_units(doc, "sentence", doc.spans):
            answer = to_json(target_entities(unit, doc.spans))
            ids, labels = renderer.example(unit.text, answer)
            prompt = renderer.prompt_ids(unit.text)
            assert ids[: len(prompt)] == prompt
            assert ids.count(tokenizer.bos_token_id) == 1 and ids[0] == tokenizer.bos_token_id
            # loss on the answer only: every prompt label is -100, every answer token is its own label
            assert all(label == -100 for label in labels[: len(prompt)])
            assert labels[len(prompt) :] == ids[len(prompt) :]
            assert json.loads(
                tokenizer.decode(ids[len(prompt) : -1], skip_special_tokens=True)
            ) == json.loads(answer)
            assert ids[-1] == renderer.end_id
    tokenizer.chat_template = None


def test_targets_are_compact_json_in_text_order():
    unit = TextUnit("d", 10, 30, "toma ibuprofeno 5 mg")
    spans = [Span(26, 30, "DOSIS"), Span(15, 25, "FARMACO"), Span(0, 5, "X")]
    assert to_json(target_entities(unit, spans)) == (
        '[{"text":"ibuprofeno","type":"FARMACO","start":5,"end":15},'
        '{"text":"5 mg","type":"DOSIS","start":16,"end":20}]'
    )
    assert unit.to_document(Span(5, 15, "FARMACO")) == Span(15, 25, "FARMACO")


def test_entity_free_units_are_downsampled_by_a_seeded_fraction(tokenizer):
    renderer = make_renderer(PROMPT, tokenizer, TYPES, instruct=False)
    train = synthetic_splits()["train"][:20]
    full, _ = training_examples(train, renderer, "sentence", 512)
    empty_answer = renderer.answer_ids("[]")

    def is_empty(example: dict) -> bool:
        return [t for t in example["labels"] if t != -100] == empty_answer

    n_empty = sum(map(is_empty, full))
    assert 0 < n_empty < len(full)
    half, _ = training_examples(train, renderer, "sentence", 512, empty_fraction=0.5, seed=1)
    assert sum(map(is_empty, half)) == round(0.5 * n_empty)
    assert [e for e in half if not is_empty(e)] == [e for e in full if not is_empty(e)]  # mentions all kept
    assert [e for e in half if e in full] == half  # order kept
    assert training_examples(train, renderer, "sentence", 512, empty_fraction=0.5, seed=1)[0] == half
    other, _ = training_examples(train, renderer, "sentence", 512, empty_fraction=0.5, seed=2)
    assert other != half  # the seed picks the sample
    none, _ = training_examples(train, renderer, "sentence", 512, empty_fraction=0.0)
    assert not any(map(is_empty, none))
    with pytest.raises(ValueError):
        keep_empty(full, [0], 1.5, 0)


def test_offset_digits_can_be_left_out_of_the_loss(tokenizer, docs):
    renderer = make_renderer(PROMPT, tokenizer, TYPES, instruct=False)
    unit = next(u for d in docs for u in make_units(d, "sentence", d.spans) if target_entities(u, d.spans))
    doc = next(d for d in docs if d.id == unit.doc_id)
    answer = to_json(target_entities(unit, doc.spans))
    assert [answer[s:e] for s, e in offset_values(answer)] == [
        str(v) for e in target_entities(unit, doc.spans) for v in (e["start"], e["end"])
    ]
    ids, labels = renderer.example(unit.text, answer)
    same_ids, masked = renderer.example(unit.text, answer, offset_values(answer))
    assert same_ids == ids
    dropped = [t for t, a, b in zip(ids, labels, masked, strict=True) if a != b]
    assert dropped and all(b == -100 for a, b in zip(labels, masked, strict=True) if a != b)
    assert set(tokenizer.decode(dropped)) <= set("0123456789 ")  # only digits leave the loss
    assert masked[-1] == renderer.end_id  # the end token is still learned


def test_batched_left_padded_generation_equals_sequential(tokenizer, docs):
    renderer = make_renderer(PROMPT, tokenizer, TYPES, instruct=False)
    units = [u for d in docs for u in make_units(d, "sentence")][:10]
    prompts = [renderer.prompt_ids(u.text) for u in units]
    assert len({len(p) for p in prompts}) > 1  # padding really happens
    model = tiny_model(tokenizer)
    args = (tokenizer.pad_token_id, renderer.stop_ids, 12)
    assert generate(model, prompts, *args, batch_size=5) == generate(model, prompts, *args, batch_size=1)


def test_a_shared_prompt_prefix_prefilled_once_gives_the_same_answers(tokenizer, docs):
    renderer = make_renderer(PROMPT, tokenizer, TYPES, instruct=False)
    units = [u.text for d in docs for u in make_units(d, "sentence")][:10]
    prompts = [renderer.prompt_ids(text) for text in units]
    shared = shared_prompt_prefix(prompts)
    assert shared > 5 and len({len(p) for p in prompts}) > 1  # the instruction is shared; padding happens
    model = tiny_model(tokenizer)
    with torch.no_grad():  # sharper logits: answers of several tokens, not a stop at once
        model.lm_head.weight.mul_(30)
    rows = []  # what the first decoder layer is fed: the prefix once, then the prompts past it
    model.model.layers[0].register_forward_pre_hook(lambda m, args: rows.append(tuple(args[0].shape[:2])))
    args = (tokenizer.pad_token_id, renderer.stop_ids, 12, 4)
    shared_answers = generate(model, prompts, *args, share_prefix=True)
    assert rows[0] == (1, shared) and rows[1] == (4, max(map(len, prompts)) - shared)
    assert shared_answers == generate(model, prompts, *args)
    assert sum(map(len, shared_answers)) > len(prompts)  # something was generated
    vocab = TokenVocab(tokenizer)

    def constrained(share: bool) -> list[list[int]]:
        constraint = SchemaConstraint(vocab, units, TYPES, renderer.stop_ids, 40)
        return generate(model, prompts, *args[:2], 40, 4, constraint=constraint, share_prefix=share)

    assert constrained(True) == constrained(False)


def random_walk(
    grammar: SpanGrammar, vocab: TokenVocab, budget: int, rng: random.Random, stop: int
) -> list[int]:
    """Decode with uniformly random choices among the allowed tokens (a random 'model'), as the constraint does."""
    state, out = START, []
    for step in range(budget):
        if state == DONE:
            out.append(stop)
            break
        options = allowed_tokens(grammar, vocab.trie, state, budget - step - 1 <= grammar.finish_bytes)
        assert options, f"dead end in state {state}"
        token = rng.choice(sorted(options))
        out.append(token)
        state = options[token]
    return out


@pytest.mark.parametrize("whole_words", [False, True])
@pytest.mark.parametrize("budget", [3, 20, 60, 200])
def test_constrained_random_walks_give_valid_copied_json(tokenizer, docs, budget, whole_words):
    vocab = TokenVocab(tokenizer)
    rng = random.Random(budget)
    texts = [u.text for d in docs for u in make_units(d, "sentence")] + ['dijo "5 mg" \\ de¿ácido?', "   "]
    texts.append(
        "Hipertiroidismoautoinmunitarioprolongadoconanticuerpos y 5 mg"
    )  # a word longer than 4 bytes
    for text in texts:
        grammar = SpanGrammar(text, PHARMA, whole_words)
        for _ in range(5):
            ids = random_walk(grammar, vocab, budget, rng, tokenizer.eos_token_id)
            answer = tokenizer.decode(ids, skip_special_tokens=True)
            entities = json.loads(answer)
            assert isinstance(entities, list)
            edges = [edge for e in entities for edge in (e["start"], e["end"])]
            assert edges == sorted(edges)  # text order, no overlap
            for e in entities:
                assert list(e) == ["text", "type", "start", "end"] and e["type"] in PHARMA
                assert e["text"] and text[e["start"] : e["end"]] == e["text"]
                if whole_words:  # no word cut in two at either edge
                    assert not (
                        e["start"] > 0 and text[e["start"] - 1].isalnum() and text[e["start"]].isalnum()
                    )
                    assert not (
                        e["end"] < len(text) and text[e["end"] - 1].isalnum() and text[e["end"]].isalnum()
                    )


def test_entity_bias_opens_entities_and_stays_valid(tokenizer, docs):
    renderer = make_renderer(PROMPT, tokenizer, TYPES, instruct=False)
    units = [u.text for d in docs for u in make_units(d, "sentence")][:8]
    prompts = [renderer.prompt_ids(t) for t in units]
    vocab = TokenVocab(tokenizer)
    model = tiny_model(tokenizer, 1)

    def entities(bias: float) -> list[list[dict]]:
        constraint = SchemaConstraint(vocab, units, TYPES, renderer.stop_ids, 120, entity_bias=bias)
        answers = generate(
            model, prompts, tokenizer.pad_token_id, renderer.stop_ids, 120, 4, constraint=constraint
        )
        return [json.loads(tokenizer.decode(ids, skip_special_tokens=True)) for ids in answers]

    closed, opened = entities(-1e4), entities(1e4)
    assert all(found == [] for found in closed)  # a large negative bias always closes at once
    assert all(found for found in opened)  # a large positive one opens an entity whenever the budget allows
    for text, found in zip(units, opened, strict=True):
        for e in found:
            assert text[e["start"] : e["end"]] == e["text"] and e["type"] in TYPES


def test_constrained_generation_with_random_models(tokenizer, docs):
    renderer = make_renderer(PROMPT, tokenizer, TYPES, instruct=False)
    units = [u.text for d in docs for u in make_units(d, "sentence")][:8]
    prompts = [renderer.prompt_ids(t) for t in units]
    vocab = TokenVocab(tokenizer)
    for seed in range(3):
        model = tiny_model(tokenizer, seed)
        with torch.no_grad():  # push the random model towards opening entities rather than closing at once
            model.lm_head.weight.mul_(30)
        constraint = SchemaConstraint(vocab, units, TYPES, renderer.stop_ids, 60)
        answers = generate(
            model, prompts, tokenizer.pad_token_id, renderer.stop_ids, 60, 4, constraint=constraint
        )
        for text, ids in zip(units, answers, strict=True):
            for e in json.loads(tokenizer.decode(ids, skip_special_tokens=True)):
                assert text[e["start"] : e["end"]] == e["text"] and e["type"] in TYPES


@settings(max_examples=300, deadline=None)
@given(st.text(), st.text(max_size=40))
def test_parser_never_crashes_on_random_text(raw, text):
    spans = anchor_entities(text, extract_items(raw), PHARMA)
    assert all(0 <= s.start < s.end <= len(text) and s.type in PHARMA for s in spans)
    assert parse_spans(raw, text, PHARMA) == spans


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-5, 60) | st.floats(allow_nan=True) | st.text(max_size=8),
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(st.sampled_from(["text", "type", "start", "end", "x"]), children, max_size=5)
    ),
    max_leaves=20,
)


@settings(max_examples=300, deadline=None)
@given(json_values, st.integers(0, 30))
def test_parser_never_crashes_on_random_json(value, cut):
    raw = json.dumps(value)
    text = "el ácido fólico y el ácido fólico 5 mg"
    for candidate in (raw, raw[:cut], "Respuesta: " + raw + " fin"):
        for span in parse_spans(candidate, text, PHARMA):
            assert 0 <= span.start < span.end <= len(text)


def test_types_are_normalised_like_the_original():
    assert normalize_type("proteínas", PHARMA) == "PROTEINAS"
    assert normalize_type("No normalizables", PHARMA) == "NO_NORMALIZABLES"
    assert normalize_type("no-normalizable", PHARMA) == "NO_NORMALIZABLES"  # fuzzy
    assert normalize_type("xyz", PHARMA) == "UNCLEAR"
    assert normalize_type("xyz", TYPES) is None


def test_offsets_kept_when_right_else_anchored_to_a_free_occurrence():
    text = "ácido fólico y ácido fólico"
    items = [
        {"text": "ácido fólico", "type": "NORMALIZABLES", "start": 0, "end": 12},
        {
            "text": "ácido fólico",
            "type": "NORMALIZABLES",
            "start": 0,
            "end": 12,
        },  # duplicate: kept as written
        {"text": "ácido fólico", "type": "NORMALIZABLES", "start": 3, "end": 9},  # wrong offsets
        {"text": "insulina", "type": "PROTEINAS", "start": 0, "end": 8},  # not in the text
    ]
    assert anchor_entities(text, items, PHARMA) == [
        Span(0, 12, "NORMALIZABLES"),
        Span(0, 12, "NORMALIZABLES"),
        Span(15, 27, "NORMALIZABLES"),
    ]
    fresh = [
        {"text": "ácido fólico", "type": "NORMALIZABLES"}
    ] * 2  # no offsets: first, then the next free one
    assert anchor_entities(text, fresh, PHARMA) == [
        Span(0, 12, "NORMALIZABLES"),
        Span(15, 27, "NORMALIZABLES"),
    ]


def test_generative_metric_definitions_on_hand_made_cases():
    gold = [{"text": "ácido", "type": "NORMALIZABLES", "start": 0, "end": 5}]
    samples = [
        Sample('[{"text":"ácido","type":"NORMALIZABLES","start":0,"end":5}]', "ácido y sal", gold),  # exact
        Sample(
            'x [{"text":"sal","type":"PROTEINAS","start":8,"end":11},{"text":"oro"}] y', "ácido y sal", []
        ),
        Sample("[]", "nada", []),  # empty list: non-compliant in the original
        Sample("no json", "nada", gold),
        Sample(
            '[{"text":"ácido","type":"NORMALIZABLES","start":1,"end":6}]', "ácido", gold
        ),  # wrong boundary
    ]
    m = generative_metrics(samples, PHARMA)
    assert m["json_parse_rate"] == pytest.approx(4 / 5)
    assert m["hallucination_rate"] == pytest.approx((0 + 1 / 2 + 0 + 0 + 0) / 5)  # diluted by empty samples
    assert m["hallucination_rate_micro"] == pytest.approx(1 / 4)
    assert m["boundary_accuracy"] == pytest.approx((1 + 0 + 0 + 0 + 0) / 5)  # 0 where undefined
    assert m["boundary_accuracy_matched"] == pytest.approx((1 + 0) / 2)
    assert m["boundary_accuracy_micro"] == pytest.approx(1 / 2)
    assert m["format_compliance"] == pytest.approx(2 / 4)  # `{"text":"oro"}` lacks keys, `[]` counts as 0
    assert m["format_compliance_corrected"] == pytest.approx(3 / 4)

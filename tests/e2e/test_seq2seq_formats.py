"""Answer formats of seq2seq (approach.format): round trips, parsers, constrained decoding with jump-forward."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from hydra import compose, initialize_config_dir
from hypothesis import given, settings
from hypothesis import strategies as st

import clinical_ner.config  # noqa: F401  (registers the schema)
from clinical_ner.approaches.seq2seq.decoding import SchemaConstraint, TokenVocab, _Batch, generate
from clinical_ner.approaches.seq2seq.formats import FORMATS, answer_format
from clinical_ner.approaches.seq2seq.formats.roundtrip import round_trip
from clinical_ner.approaches.seq2seq.grammar import DONE, START
from clinical_ner.approaches.seq2seq.metrics import Sample
from clinical_ner.approaches.seq2seq.prompt import fill_instruction
from clinical_ner.approaches.seq2seq.units import TextUnit, make_units
from clinical_ner.config import PromptConfig
from clinical_ner.data.brat import read_split
from clinical_ner.data.synthetic import synthetic_splits
from clinical_ner.data.types import Span
from clinical_ner.metrics.span_scorer import parse_official_ann
from clinical_ner.models.tokenizer import train_tokenizer
from clinical_ner.predict import main as predict_main
from tests.e2e.test_seq2seq_e2e import TINY
from tests.unit.test_seq2seq import PHARMA, TYPES, tiny_model

CONF = Path(__file__).resolve().parents[2] / "conf"
COPY = ("inline", "words")
TEXT = "Se pautó paracetamol 1 g cada 8 h por fiebre, y ácido fólico."
GOLD = [Span(9, 20, "FARMACO"), Span(21, 24, "DOSIS"), Span(38, 44, "SINTOMA"), Span(48, 60, "FARMACO")]


@pytest.fixture(scope="module", params=["byte_level_bpe", "sentencepiece_bpe"])
def tokenizer(request):
    return train_tokenizer(request.param, 700, [d.text for d in synthetic_splits()["train"][:60]])


def unit(text: str) -> TextUnit:
    return TextUnit("d", 0, len(text), text)


def test_targets_are_the_text_with_markers_or_labels():
    assert answer_format("inline").target(unit(TEXT), GOLD) == (
        "Se pautó {FARMACO paracetamol} {DOSIS 1 g} cada 8 h por {SINTOMA fiebre}, y {FARMACO ácido fólico}."
    )
    words = answer_format("words").target(unit("con ácido fólico, 1 g"), [Span(4, 16, "FARMACO")])
    assert words == "con|O ácido|B-FARMACO fólico|I,|O 1|O g|O"


@pytest.mark.parametrize("name", sorted(FORMATS))
def test_gold_round_trip_on_synthetic_documents(name):
    docs = synthetic_splits()["train"][:80]
    counts = round_trip(answer_format(name), docs, TYPES, "sentence")
    assert counts.mentions > 100 and counts.document_share == 1.0


@pytest.mark.corpus
@pytest.mark.parametrize("name", sorted(FORMATS))
def test_gold_round_trip_on_every_pharmaconer_training_document(pharmaconer_dir, name):
    docs = read_split(pharmaconer_dir / "train")
    counts = round_trip(answer_format(name), docs, PHARMA, "sentence")
    assert counts.documents == 500
    if name == "words":  # 14 mentions start or end inside a word: the word is labelled whole
        assert counts.mention_share > 0.997 and counts.exact_documents >= 490
    else:
        assert counts.document_share == 1.0 and counts.mention_share == 1.0


@pytest.mark.parametrize("name", COPY)
def test_free_answers_with_copy_errors_keep_the_spans_they_still_copied(name):
    answer = answer_format(name)
    target = answer.target(unit(TEXT), GOLD)
    changed = target.replace("pautó", "indicó").replace("cada", "cad")  # copy errors away from mentions
    assert sorted(answer.parse(changed, TEXT, TYPES)) == GOLD
    broken = target.replace("fiebre", "fiebres")  # a mention copied wrong is lost, the others stay
    assert sorted(answer.parse(broken, TEXT, TYPES)) == [g for g in GOLD if g.type != "SINTOMA"]
    samples = [Sample(target, TEXT), Sample(changed, TEXT), Sample(target + "{", TEXT)]
    metrics = answer.metrics(samples, TYPES)
    assert metrics["copy_mismatch_rate"] == pytest.approx(2 / 3)
    assert metrics["unparseable_rate"] == pytest.approx(1 / 3)  # the stray `{` (or a word without a label)


def test_unknown_types_and_stray_markers_are_unparseable():
    inline, words = answer_format("inline"), answer_format("words")
    assert inline.metrics([Sample("Se {VIRUS gripe}.", "Se gripe.")], TYPES)["unparseable_rate"] == 1.0
    assert words.metrics([Sample("Se|O gripe|I.|O", "Se gripe.")], TYPES)["unparseable_rate"] == 1.0
    assert words.parse("Se|O gripe|B-SINTOMA.|O", "Se gripe.", TYPES) == [Span(3, 8, "SINTOMA")]


def random_constrained_answer(
    name: str, text: str, vocab: TokenVocab, rng: random.Random, jump: bool, budget: int
) -> tuple[str, int]:
    """Decode `text` with random logits through the real constraint (and jump-forward); (answer, steps)."""
    stop = vocab.tokenizer.eos_token_id
    constraint = SchemaConstraint(
        vocab,
        [text],
        TYPES,
        [stop],
        budget,
        whole_words=rng.random() < 0.5,
        answer=answer_format(name),
        jump_forward=jump,
    )
    ids: list[int] = []
    steps = 0
    while len(ids) < budget:
        scores = torch.tensor([[rng.gauss(0, 3) for _ in range(len(vocab.pieces))]])
        token = int(constraint.restrict([0], [len(ids)], scores).argmax())
        steps += 1
        if token == stop:
            break
        constraint.advance([0], [token])
        ids += constraint.jump(0, token, budget - len(ids))
    return vocab.tokenizer.decode(ids, skip_special_tokens=True), steps


_VOCABS: dict[str, TokenVocab] = {}


def vocab_of(kind: str) -> TokenVocab:
    if kind not in _VOCABS:
        texts = [d.text for d in synthetic_splits()["train"][:60]]
        _VOCABS[kind] = TokenVocab(train_tokenizer(kind, 700, texts))
    return _VOCABS[kind]


@settings(max_examples=60, deadline=None)
@given(
    text=st.text(st.sampled_from(list("ab ácido,.1{}|\nñ-ÁZ€")), min_size=1, max_size=30).filter(str.strip),
    name=st.sampled_from(COPY),
    kind=st.sampled_from(["byte_level_bpe", "sentencepiece_bpe"]),
    seed=st.integers(0, 2**16),
    jump=st.booleans(),
)
def test_constrained_decoding_with_random_logits_copies_the_input_and_parses(text, name, kind, seed, jump):
    text = text.strip()
    answer = answer_format(name)
    rng = random.Random(seed)
    budget = answer.constrained_budget(
        rng.choice([0, 3, 40]), text, TYPES
    )  # tight budgets too: still complete
    raw, _ = random_constrained_answer(name, text, vocab_of(kind), rng, jump, budget)
    spans = answer.aligned(raw, text, TYPES)
    assert spans is not None, raw  # in the format's language: well-formed, and the copy is the input
    copy, read_spans, _ = answer.read(raw, TYPES)
    if "{" not in text and "}" not in text and "|" not in text:  # marker characters only copy, never confuse
        lead = len(copy) - len(text)  # SentencePiece's dummy prefix, when the first token wrote it
        assert copy[lead:] == text and lead in (0, 1)
        assert sorted(Span(s.start - lead, s.end - lead, s.type) for s in read_spans) == sorted(spans)
    assert answer.metrics([Sample(raw, text)], TYPES) == {
        "samples": 1,
        "unparseable_rate": 0.0,
        "copy_mismatch_rate": 0.0,
    }
    for span in spans:
        assert span.type in TYPES and 0 <= span.start < span.end <= len(text)


@pytest.mark.parametrize("name", COPY)
def test_jump_forward_takes_fewer_steps_for_the_same_kind_of_answer(name):
    vocab = vocab_of("byte_level_bpe")
    texts = [u.text for d in synthetic_splits()["test"][:4] for u in make_units(d, "sentence")][:6]
    stepped = sum(random_constrained_answer(name, t, vocab, random.Random(1), False, 600)[1] for t in texts)
    jumped = sum(random_constrained_answer(name, t, vocab, random.Random(1), True, 600)[1] for t in texts)
    assert jumped < stepped


def test_feeding_a_run_gives_the_logits_of_stepping_through_it(tokenizer):
    model = tiny_model(tokenizer)
    prompts = [tokenizer("Paciente con fiebre")["input_ids"], tokenizer("Dosis")["input_ids"]]
    runs = [[40, 41, 42], [43]]

    def start() -> _Batch:
        width = max(map(len, prompts))
        ids = torch.tensor([[0] * (width - len(p)) + p for p in prompts])
        mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in prompts])
        return _Batch(model, ids, mask, [0, 1])

    with torch.inference_mode():
        fed = start()
        heads = []  # positions the LM head projects per feed: each line's last run token only
        hook = model.lm_head.register_forward_hook(lambda m, args, out: heads.append(args[0].shape[:-1]))
        fed.feed(runs)
        hook.remove()
        assert [tuple(shape) for shape in heads] == [(2, 1)]
        for line, run in enumerate(runs):
            alone = _Batch(
                model, torch.tensor([prompts[line]]), torch.ones(1, len(prompts[line]), dtype=torch.long), [0]
            )
            for token in run:
                alone.step(torch.tensor([token]))
            torch.testing.assert_close(fed.logits[line], alone.logits[0], atol=1e-4, rtol=1e-4)
        fed.step(torch.tensor([44, 45]))  # and decoding goes on from there as usual
        assert fed.logits.shape[0] == 2


def decode_units(
    tokenizer, name: str, variants: list[tuple[bool, int]], count: int, entity_bias: float = 0.0
) -> dict:
    """Constrained answers (token ids) of a tiny model to `count` synthetic test sentences and the forward
    passes they took, per (jump_forward, draft_tokens) variant; also the sentences."""
    model = tiny_model(tokenizer)
    texts = [u.text for d in synthetic_splits()["test"][:4] for u in make_units(d, "sentence")][:count]
    prompts = [tokenizer(t)["input_ids"] for t in texts]
    calls = []
    model.register_forward_hook(lambda *args: calls.append(1))
    vocab, out = TokenVocab(tokenizer), {"texts": texts}
    for jump, drafts in variants:
        calls.clear()
        constraint = SchemaConstraint(
            vocab, texts, TYPES, [tokenizer.eos_token_id], 400, answer=answer_format(name),
            jump_forward=jump, draft_tokens=drafts, entity_bias=entity_bias,
        )  # fmt: skip
        ids = generate(
            model, prompts, tokenizer.pad_token_id, [tokenizer.eos_token_id], 400, 3, constraint=constraint
        )
        out[jump, drafts] = ids, len(calls)
    return out


@pytest.mark.parametrize("name", COPY)
def test_generate_with_jump_forward_copies_every_unit(tokenizer, name):
    decoded, answer = decode_units(tokenizer, name, [(False, 0), (True, 0)], 5), answer_format(name)
    for jump in (False, True):
        for text, row in zip(decoded["texts"], decoded[jump, 0][0], strict=True):
            assert answer.aligned(tokenizer.decode(row, skip_special_tokens=True), text, TYPES) is not None
    assert decoded[True, 0][1] < decoded[False, 0][1]


@pytest.mark.parametrize("name", COPY)
def test_the_grammar_guess_writes_the_text_with_no_mention(name):
    """Drafts follow `guess`: from the start, it writes the answer of a unit without mentions."""
    answer = answer_format(name)
    grammar, state, written = answer.grammar(TEXT, TYPES, False, False), START, bytearray()
    while state != DONE:
        byte, state = grammar.guess(state)
        written.append(byte)
    assert written.decode("utf-8") == answer.target(unit(TEXT), [])


def test_verify_then_settle_gives_the_logits_of_stepping_through_the_kept_tokens(tokenizer):
    model = tiny_model(tokenizer)
    prompts = [tokenizer("Paciente con fiebre")["input_ids"], tokenizer("Dosis")["input_ids"]]

    def start(lines: list[list[int]]) -> _Batch:
        width = max(map(len, lines))
        ids = torch.tensor([[0] * (width - len(p)) + p for p in lines])
        mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in lines])
        return _Batch(model, ids, mask, list(range(len(lines))))

    with torch.inference_mode():
        batch = start(prompts)
        scores = batch.verify([[40], [41, 42]], [[43, 44, 45], [46]])
        # scores after the run, and after each draft token
        assert [tuple(s.shape[:1]) for s in scores] == [(4,), (2,)]
        batch.settle(scores, [1, 0], [3, 1])  # line 0 keeps 43, line 1 keeps nothing
        batch.step(torch.tensor([50, 51]))
        for line, kept in enumerate([[40, 43, 50], [41, 42, 51]]):
            alone = start([prompts[line]])
            for token in kept:
                alone.step(torch.tensor([token]))
            torch.testing.assert_close(batch.logits[line], alone.logits[0], atol=1e-4, rtol=1e-4)
        # the masked draft columns were dropped where no line uses them (45: only line 0 fed it)
        assert batch.mask.shape[1] == batch.cache.layers[0].keys.shape[2] < len(prompts[0]) + 6


@pytest.mark.parametrize("name", COPY)
def test_copy_drafts_write_the_same_answers_in_fewer_forward_passes(tokenizer, name):
    decoded = decode_units(tokenizer, name, [(False, 0), (False, 8), (True, 0), (True, 4), (True, 32)], 8)
    answers = {variant: value[0] for variant, value in decoded.items() if variant != "texts"}
    passes = {variant: value[1] for variant, value in decoded.items() if variant != "texts"}
    assert answers[False, 8] == answers[False, 0]
    assert answers[True, 4] == answers[True, 32] == answers[True, 0]
    assert passes[False, 8] < passes[False, 0] and passes[True, 32] < passes[True, 0]


@pytest.mark.slow
@pytest.mark.parametrize("decoding", ["constrained", "free"])
@pytest.mark.parametrize("name", COPY)
def test_cli_run_per_copy_format(tmp_path, name, decoding):
    """`python -m clinical_ner.train approach=seq2seq approach.format=...` end to end (tiny, synthetic)."""
    run_dir = tmp_path / "run"
    command = [
        sys.executable,
        "-m",
        "clinical_ner.train",
        "approach=seq2seq",
        f"approach.format={name}",
        f"approach.decoding={decoding}",
        "approach.max_new_tokens=40",
        "approach.val_limit=1",
        "data=synthetic",
        "data.train_limit=12",
        "data.eval_limit=3",
        "trainer.max_steps=3",
        "data.batch_size=8",
        "logger=none",
        "trainer.enable_progress_bar=false",
        "trainer.threads=1",
        f"output_dir={run_dir}",
        *TINY,
    ]
    env = {**os.environ, "CLINICAL_NER_CACHE": str(tmp_path / "cache")}
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    results = json.loads((run_dir / "results.json").read_text())
    test = results["test"]
    assert results["status"] == "complete" and results["config"]["approach"]["format"] == name
    assert {"unparseable_rate", "copy_mismatch_rate"} <= set(test) and "json_parse_rate" not in test
    if decoding == "constrained":  # by construction, and said so
        assert test["unparseable_rate"] == 0.0 and test["copy_mismatch_rate"] == 0.0
        assert test["guaranteed_by_decoder"] == ["unparseable_rate", "copy_mismatch_rate"]
    else:
        assert test["guaranteed_by_decoder"] == []
    settings_file = json.loads((run_dir / "model" / "clinical_ner.json").read_text())
    assert settings_file["format"] == name and settings_file["jump_forward"] is True
    assert settings_file["draft_tokens"] == 32  # the copy formats' default (approach.draft_tokens: null)
    written = sorted((run_dir / "predictions" / "test").glob("*.ann"))
    assert len(written) == 3
    if (
        decoding == "constrained"
    ):  # `predict` on the saved run reads the format back and answers as the run did
        inputs = tmp_path / "inputs"
        inputs.mkdir()
        for doc in synthetic_splits()["test"][:3]:
            (inputs / f"{doc.id}.txt").write_text(doc.text, encoding="utf-8")
        predict_main([str(run_dir), str(inputs), "--out", str(tmp_path / "out"), "--threads", "1"])
        for ann in written:
            assert parse_official_ann(tmp_path / "out" / ann.name) == parse_official_ann(ann)


def test_format_is_checked_at_compose_time():
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        with pytest.raises(Exception, match="format"):
            compose("train", overrides=["approach=seq2seq", "approach.format=xml"])
        cfg = compose(
            "train", overrides=["approach=seq2seq", "approach.format=inline", "model=smollm2", "scale=small"]
        )
    assert cfg.approach.format == "inline" and "{format}" in cfg.approach.prompt.instruction


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        ([], "Menciones en JSON."),
        (
            ["model=smollm2", "scale=small"],
            "Extrae las menciones de fármacos, compuestos químicos y proteínas del texto clínico como lista JSON "
            "(NORMALIZABLES, NO_NORMALIZABLES, PROTEINAS, UNCLEAR); [] si no hay ninguna.",
        ),
    ],
)
def test_json_prompts_are_the_ones_runs_had_before_formats(overrides, expected):
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose("train", overrides=["approach=seq2seq", *overrides])
    assert fill_instruction(cfg.approach.prompt, PHARMA, "json") == expected
    es = yaml.safe_load((CONF / "prompt" / "es.yaml").read_text())
    paper = PromptConfig(instruction=es["instruction"], type_descriptions={}, format_lines={}, user="{text}")
    assert fill_instruction(paper, PHARMA, "json").endswith(  # the paper prompt's last lines, as before
        "- UNCLEAR\nContesta únicamente con una lista JSON, sin explicaciones. Cada elemento es un objeto con cuatro "
        'claves: "text" (la mención tal y como está escrita en el texto, copiada carácter a carácter), "type" (uno '
        'de los tipos anteriores), "start" y "end" (posiciones de carácter de la mención dentro del texto, contando '
        'desde 0; "end" señala el carácter que sigue a la mención). Ordena los objetos según su aparición en el '
        "texto. Si el texto no contiene ninguna mención, contesta []."
    )


@pytest.mark.parametrize("name", sorted(FORMATS))
def test_entity_sign_marks_each_mention_opened_or_the_list_closed(name):
    """Along the gold answer's byte path, `entity_sign` is +1 once per mention (a copy format's marker or `B`
    label) and 0 elsewhere; for JSON it is -1 once, where the list closes: what `entity_bias` acts on."""
    answer = answer_format(name)
    grammar, state, signs = answer.grammar(TEXT, TYPES, False, False), START, []
    for byte in answer.target(unit(TEXT), GOLD).encode("utf-8"):
        after = dict(grammar.successors(state, finishing=False))[byte]
        signs.append(grammar.entity_sign(state, after))
        state = after
    assert state == DONE
    expected = [-1] if name == "json" else [1] * len(GOLD)
    assert [sign for sign in signs if sign] == expected


@pytest.mark.parametrize("name", COPY)
def test_entity_bias_opens_more_mentions_and_drafts_still_decode_the_same(tokenizer, name):
    """A bonus on opening a mention makes the constrained answers hold more mentions; copy drafts, checked with
    the same bonus, keep the answers of step-by-step decoding."""
    plain = decode_units(tokenizer, name, [(True, 0)], 6)
    variants = [(True, 0), (True, 32), (False, 0), (False, 8)]
    biased = decode_units(tokenizer, name, variants, 6, entity_bias=8.0)
    assert biased[True, 32][0] == biased[True, 0][0] and biased[False, 8][0] == biased[False, 0][0]
    answer = answer_format(name)

    def mentions(decoded) -> int:
        rows = zip(decoded["texts"], decoded[True, 0][0], strict=True)
        return sum(
            len(answer.aligned(tokenizer.decode(r, skip_special_tokens=True), t, TYPES)) for t, r in rows
        )

    assert mentions(biased) > mentions(plain)


@pytest.mark.parametrize("bias", [0.0, 5.0])
def test_accept_weighs_the_entity_bias_even_where_the_draft_is_the_favourite(bias):
    """Every draft token is the model's favourite over the whole vocabulary; with a bonus larger than the
    margin, opening a marker wins at the draft's first word start instead, as `restrict` would decide."""
    vocab = vocab_of("byte_level_bpe")
    stop = vocab.tokenizer.eos_token_id
    constraint = SchemaConstraint(
        vocab, [TEXT], TYPES, [stop], 400, answer=answer_format("inline"), jump_forward=True,
        draft_tokens=16, entity_bias=bias,
    )  # fmt: skip
    first = vocab.encode(b"Se")[0]  # the first word, copied
    constraint.restrict([0], [0], torch.zeros(1, len(vocab.pieces)))
    constraint.advance([0], [first])
    written = constraint.jump(0, first, 400)
    draft = constraint.draft(0, 400 - len(written))
    assert draft
    logits = torch.zeros(len(draft) + 1, len(vocab.pieces))
    logits[torch.arange(len(draft)), torch.tensor(draft)] = 1.0  # the favourite, by a margin of 1
    kept = constraint.accept(0, draft, logits, len(written))
    if not bias:
        assert kept == len(draft)
    else:  # it stops at the first choice where a marker may open; there restrict opens one too
        guessed = {index: token for index, token, _ in constraint.drafted[0]}
        assert kept < len(draft) and kept in guessed
        scores = constraint.restrict([0], [len(written) + kept], logits[kept : kept + 1])
        chosen = int(scores.argmax())
        assert chosen != guessed[kept] and constraint.options[0][chosen][0] == "t"

"""Seq2seq prompts: the template family follows the weights (chat only for instruct weights), and chat prompts
never depend on the day they are rendered."""

from __future__ import annotations

from datetime import datetime

import pytest
import transformers.utils.chat_template_utils as chat_utils

import clinical_ner.training.inputs as run_inputs
from clinical_ner.approaches.seq2seq.prompt import make_renderer
from clinical_ner.approaches.seq2seq.stage import Seq2seqStage
from clinical_ner.config import PromptConfig, compose_config
from clinical_ner.data.synthetic import synthetic_splits
from clinical_ner.errors import UserError
from clinical_ner.models.tokenizer import train_tokenizer
from clinical_ner.models.weights import instruct_weights

# the date logic of the Llama 3.2 instruct template, and a template that asks for today's date directly
DATE_STRING = (
    "{%- if not date_string is defined %}{%- if strftime_now is defined %}"
    '{%- set date_string = strftime_now("%d %b %Y") %}{%- else %}{%- set date_string = "26 Jul 2024" %}'
    "{%- endif %}{%- endif %}"
)
TURNS = (
    "{% for m in messages %}<|start_header_id|>{{ m['role'] }}<|end_header_id|>\n\n{{ m['content'] }}<|eot_id|>"
    "{% endfor %}{% if add_generation_prompt %}<|start_header_id|>assistant<|end_header_id|>\n\n{% endif %}"
)
LLAMA_3_2 = DATE_STRING + "{{ bos_token }}Today Date: {{ date_string }}\n" + TURNS
CLOCK_ONLY = '{{ bos_token }}Today: {{ strftime_now("%Y-%m-%d") }}\n' + TURNS


class _Day:
    """A stand-in for `datetime` whose `now()` is a chosen day."""

    def __init__(self, day: datetime) -> None:
        self.day = day

    def now(self, tz=None) -> datetime:
        return self.day


@pytest.fixture(scope="module")
def tokenizer():
    return train_tokenizer("byte_level_bpe", 600, [d.text for d in synthetic_splits()["train"][:30]])


def test_chat_prompts_are_the_same_on_any_day(tokenizer, monkeypatch):
    tokenizer.chat_template = LLAMA_3_2
    renderer = make_renderer(
        PromptConfig(instruction="Menciones.", type_descriptions={}, format_lines={}, user="{text}"),
        tokenizer,
        ["DOSIS"],
        instruct=True,
    )
    assert renderer.chat
    rendered, prompts = [], []
    for day in (datetime(2025, 1, 2), datetime(2031, 12, 30)):
        monkeypatch.setattr(chat_utils, "datetime", _Day(day))
        # the template really reads the clock: rendered without the fixed date, the two days differ
        rendered.append(tokenizer.apply_chat_template([{"role": "user", "content": "x"}], tokenize=False))
        prompts.append((renderer.prompt_text("Paracetamol 1 g."), renderer.prompt_ids("Paracetamol 1 g.")))
    assert rendered[0] != rendered[1]
    assert prompts[0] == prompts[1]
    assert "Today Date: 26 Jul 2024" in prompts[0][0]


def test_a_template_that_only_reads_the_clock_is_refused(tokenizer):
    tokenizer.chat_template = CLOCK_ONLY
    with pytest.raises(UserError, match="today's date"):
        make_renderer(
            PromptConfig(instruction="Menciones.", type_descriptions={}, format_lines={}, user="{text}"),
            tokenizer,
            ["DOSIS"],
            instruct=True,
        )
    plain = make_renderer(
        PromptConfig(
            instruction="Menciones.", type_descriptions={}, format_lines={}, user="{text}", template="plain"
        ),
        tokenizer,
        ["DOSIS"],
        True,
    )
    assert not plain.chat


@pytest.mark.parametrize(
    ("scale", "corpus", "instruct"),
    [("tiny", "none", False), ("tiny", "es", False), ("paper", "none", True), ("paper", "bilingual", False)],
)
def test_only_the_real_instruct_checkpoint_counts_as_instruct_weights(scale, corpus, instruct):
    cfg = compose_config(["approach=seq2seq", f"scale={scale}", f"corpus={corpus}"])
    assert instruct_weights(cfg.scale, cfg.corpus.name) is instruct


@pytest.mark.parametrize("scale", ["tiny", "paper"])
@pytest.mark.parametrize("corpus", ["none", "es"])
def test_template_and_stop_token_follow_the_weights(tokenizer, monkeypatch, tmp_path, scale, corpus):
    """corpus=none and corpus=es render the template family of their weights and end answers on a token those
    weights know: continual pretraining starts from the BASE checkpoint, which never saw a chat turn."""
    cfg = compose_config(["approach=seq2seq", f"scale={scale}", f"corpus={corpus}", "scale.vocab_size=600"])
    requested = []
    if (
        scale == "paper"
    ):  # no hub here: the checkpoint's tokenizer is a Llama 3 style one with a chat template

        def hub_tokenizer(model_cfg, scale_cfg, texts, cache, instruct=False):
            requested.append(instruct)
            return tokenizer

        tokenizer.chat_template = LLAMA_3_2
        monkeypatch.setattr(run_inputs, "make_tokenizer", hub_tokenizer)
    splits = {name: docs[:30] for name, docs in synthetic_splits().items()}
    inputs = run_inputs.RunInputs(cfg, tmp_path, splits, ["DOSIS"])
    used = inputs.tokenizer(Seq2seqStage.instruct(cfg))  # what run_stage hands the stage
    renderer = Seq2seqStage(cfg, used, ["DOSIS"], splits).renderer
    instruct = scale == "paper" and corpus == "none"
    assert requested == ([instruct] if scale == "paper" else [])  # base tokenizer for base-derived weights
    assert renderer.chat is instruct
    prompt = renderer.prompt_text("Paracetamol 1 g.")
    assert ("<|start_header_id|>" in prompt) is instruct  # the chat family only for instruct weights
    stop = used.convert_tokens_to_ids("<|eot_id|>") if instruct else used.eos_token_id
    _, labels = renderer.example("Paracetamol 1 g.", "[]")
    assert labels[-1] == renderer.end_id == stop  # trained to end on it ...
    assert stop in renderer.stop_ids  # ... and generation stops on it


def test_the_small_corpus_axis_compares_one_prompt_template(tokenizer):
    """scale=small: every corpus setting prompts with the same template (the recipe's `approach.prompt.template`),
    so corpus X minus none measures pretraining, not ChatML against plain text as well."""
    tokenizer.chat_template = TURNS  # the packaged SmolLM2 folder serves base and instruct alike
    chats = {}
    for corpus in ("none", "es", "en", "bilingual"):
        cfg = compose_config(["approach=seq2seq", "model=smollm2", "scale=small", f"corpus={corpus}"])
        renderer = make_renderer(cfg.approach.prompt, tokenizer, ["DOSIS"], Seq2seqStage.instruct(cfg))
        chats[corpus] = renderer.chat
    assert chats == {"none": True, "es": True, "en": True, "bilingual": True}

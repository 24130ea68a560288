"""Chat-template prompts never depend on the day they are rendered."""

from __future__ import annotations

from datetime import datetime

import pytest
import transformers.utils.chat_template_utils as chat_utils

from clinical_ner.config import PromptConfig
from clinical_ner.data.synthetic import synthetic_splits
from clinical_ner.errors import UserError
from clinical_ner.generative.prompt import make_renderer
from clinical_ner.models.tokenizer import train_tokenizer

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
    renderer = make_renderer(PromptConfig(instruction="Menciones."), tokenizer, ["DOSIS"], pretrained=True)
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
        make_renderer(PromptConfig(instruction="Menciones."), tokenizer, ["DOSIS"], pretrained=True)
    plain = make_renderer(
        PromptConfig(instruction="Menciones.", template="plain"), tokenizer, ["DOSIS"], True
    )
    assert not plain.chat

"""Prompts for seq2seq NER: the instruction from conf/prompt, rendered through the instruct checkpoint's chat
template (instruct weights: scale=paper, corpus=none) or a plain template ending on the tokenizer's EOS (base
weights after continual pretraining, random tiny weights), always with exactly one BOS.

Training and inference share `PromptRenderer.prompt_ids`, and a training example is the prompt's ids followed by
the answer's ids, so the prompt the model is trained on is token-identical to the one it answers at inference
(the original tokenized the two differently: an empty assistant turn and a double BOS).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property

from transformers import PreTrainedTokenizerBase

from clinical_ner.approaches.seq2seq.formats import FORMATS
from clinical_ner.config import PromptConfig
from clinical_ner.errors import UserError

IGNORE = -100
EOT = "<|eot_id|>"  # Llama 3 instruct's end of turn
# Llama 3.x chat templates write a date into the system turn (`date_string`, else today's `strftime_now`):
# one fixed date, the templates' own default, keeps training, test and a later `predict` prompts identical
TEMPLATE_DATE = "26 Jul 2024"


def fill_instruction(prompt: PromptConfig, types: Sequence[str], answer_format: str = "json") -> str:
    """The instruction with `{format}` (the answer format's line), `{types}` (one line per type, with its
    description) and `{type_names}` filled."""
    descriptions: Mapping[str, str] = prompt.type_descriptions or {}
    lines = [f"- {t}: {descriptions[t]}" if descriptions.get(t) else f"- {t}" for t in types]
    line = (prompt.format_lines or {}).get(str(answer_format)) or FORMATS[str(answer_format)].instruction
    # placeholders are replaced literally, so the JSON braces in an instruction need no escaping
    text = prompt.instruction.replace("{format}", line)
    return text.replace("{types}", "\n".join(lines)).replace("{type_names}", ", ".join(types))


def use_chat_template(prompt: PromptConfig, tokenizer: PreTrainedTokenizerBase, instruct: bool) -> bool:
    """`auto`: the chat template for instruct weights (`models.weights.instruct_weights`), plain text for base
    or random ones, whose chat-turn tokens were never trained."""
    template = str(prompt.template)
    has_template = bool(getattr(tokenizer, "chat_template", None))
    if template == "chat" and not has_template:
        raise UserError("approach.prompt.template=chat but the tokenizer has no chat template")
    chat = instruct and has_template if template == "auto" else template == "chat"
    if chat and _reads_clock(tokenizer.chat_template):
        raise UserError(
            "the tokenizer's chat template writes today's date (strftime_now) without a date_string variable: "
            "prompts would change from day to day; use approach.prompt.template=plain"
        )
    return chat


def _reads_clock(chat_template: str | dict) -> bool:
    """Whether a chat template calls `strftime_now` without letting a `date_string` variable replace it."""
    text = chat_template if isinstance(chat_template, str) else " ".join(map(str, chat_template.values()))
    return "strftime_now" in text and "date_string" not in text


@dataclass
class PromptRenderer:
    """Turns a unit of text into prompt ids, and (prompt, answer) into a training example."""

    tokenizer: PreTrainedTokenizerBase
    instruction: str
    user: str
    plain: str
    chat: bool

    @cached_property
    def _eot_id(self) -> int | None:
        # get_vocab() copies the whole vocabulary (128k entries at paper scale): look once, not per example
        return self.tokenizer.convert_tokens_to_ids(EOT) if EOT in self.tokenizer.get_vocab() else None

    @property
    def end_id(self) -> int:
        """The token that ends an answer: the instruct model's end of turn, else EOS."""
        return self._eot_id if self.chat and self._eot_id is not None else self.tokenizer.eos_token_id

    @property
    def stop_ids(self) -> list[int]:
        """Every token that ends generation (EOS and, when the vocabulary has it, end of turn)."""
        ids = [self.tokenizer.eos_token_id, self.end_id]
        if self._eot_id is not None:
            ids.append(self._eot_id)
        return sorted(set(ids))

    def prompt_text(self, text: str) -> str:
        """The rendered prompt as a string (BOS included when the chat template writes it)."""
        user = self.user.replace("{text}", text)
        if self.chat:
            messages = [{"role": "system", "content": self.instruction}, {"role": "user", "content": user}]
            return self.tokenizer.apply_chat_template(
                messages, add_generation_prompt=True, tokenize=False, date_string=TEMPLATE_DATE
            )
        return self.plain.replace("{instruction}", self.instruction).replace("{user}", user)

    def prompt_ids(self, text: str) -> list[int]:
        """Token ids of the prompt for `text`: exactly one BOS, first, however the template writes it."""
        ids = self.tokenizer(self.prompt_text(text), add_special_tokens=False)["input_ids"]
        bos = self.tokenizer.bos_token_id
        if bos is None:
            return ids
        start = 0
        while start < len(ids) and ids[start] == bos:  # templates that write BOS themselves
            start += 1
        return [bos, *ids[start:]]

    def answer_ids(self, answer: str) -> list[int]:
        """Token ids the model must produce: the answer, then the end token."""
        return [*self.tokenizer(answer, add_special_tokens=False)["input_ids"], self.end_id]

    def example(
        self, text: str, answer: str, unlearned: Sequence[tuple[int, int]] = ()
    ) -> tuple[list[int], list[int]]:
        """(input_ids, labels) of a training example: the loss sees answer tokens only (prompt = -100), less
        the answer tokens lying wholly inside one of the `unlearned` character ranges of `answer`."""
        prompt, target = self.prompt_ids(text), self.answer_ids(answer)
        labels = list(target)
        if unlearned:
            encoded = self.tokenizer(answer, add_special_tokens=False, return_offsets_mapping=True)
            for index, (start, end) in enumerate(encoded["offset_mapping"]):
                if any(low <= start and end <= high for low, high in unlearned):
                    labels[index] = IGNORE
        return prompt + target, [IGNORE] * len(prompt) + labels


def make_renderer(
    prompt: PromptConfig,
    tokenizer: PreTrainedTokenizerBase,
    types: Sequence[str],
    instruct: bool,
    answer_format: str = "json",
) -> PromptRenderer:
    """The renderer a run uses (types sorted, so the prompt never depends on the order they were found in)."""
    return PromptRenderer(
        tokenizer=tokenizer,
        instruction=fill_instruction(prompt, sorted(types), answer_format),
        user=prompt.user,
        plain=prompt.plain,
        chat=use_chat_template(prompt, tokenizer, instruct),
    )

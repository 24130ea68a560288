"""Seq2seq inference: prompts -> generated answers -> spans on document offsets -> official and generative scores."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, PreTrainedTokenizerBase

from clinical_ner.approaches.seq2seq.datamodule import PromptSplit, prompt_split
from clinical_ner.approaches.seq2seq.decoding import SchemaConstraint, TokenVocab, generate
from clinical_ner.approaches.seq2seq.formats import AnswerFormat, answer_format
from clinical_ner.approaches.seq2seq.metrics import Sample
from clinical_ner.approaches.seq2seq.prompt import PromptRenderer
from clinical_ner.approaches.seq2seq.units import target_entities
from clinical_ner.config import Decoding, PromptUnit
from clinical_ner.console.progress import bar
from clinical_ner.data.types import Document, Span
from clinical_ner.metrics.span_scorer import score_documents
from clinical_ner.models.quantize import is_adapter_folder, load_adapter
from clinical_ner.training.inference_settings import InferenceSettings


@dataclass
class PromptSettings:
    """The rendered prompt's parts (clinical_ner/approaches/seq2seq/prompt.py)."""

    instruction: str
    user: str
    plain: str
    chat: bool

    @classmethod
    def of(cls, renderer: PromptRenderer) -> PromptSettings:
        return cls(renderer.instruction, renderer.user, renderer.plain, renderer.chat)

    def renderer(self, tokenizer: PreTrainedTokenizerBase) -> PromptRenderer:
        """The renderer that prompts exactly as the run did."""
        return PromptRenderer(tokenizer, self.instruction, self.user, self.plain, self.chat)


@dataclass
class Seq2seqInference(InferenceSettings):
    """How a seq2seq run prompted and decoded (clinical_ner/training/inference_settings.py)."""

    APPROACH = "seq2seq"
    unit: PromptUnit
    decoding: Decoding
    max_new_tokens: int
    types: list[str]
    prompt: PromptSettings
    entity_bias: float = 0.0  # folders saved before the option existed decoded without it
    whole_words: bool = False  # (likewise)
    earliest: bool = False  # a repeated text is its earliest occurrence (likewise: older folders did not)
    format: str = "json"  # the answer format (likewise: older folders wrote JSON)
    jump_forward: bool = False  # constrained: forced token runs fed in one pass (likewise)
    share_prefix: bool = False  # the prompts' shared prefix prefilled once (likewise)
    draft_tokens: int = 0  # constrained copy formats: copy drafts checked in one pass (likewise)


@dataclass
class Seq2SeqDecoder:
    """How a run turns prompts into answer strings (free or schema-constrained greedy decoding)."""

    tokenizer: PreTrainedTokenizerBase
    stop_ids: list[int]
    types: list[str]
    decoding: str = "free"
    max_new_tokens: int = 256
    batch_size: int = 64
    precision: str = "32"
    entity_bias: float = 0.0  # constrained only: favours entities (malus: closing JSON; bonus: a mention)
    whole_words: bool = False  # constrained only: texts start and end on word boundaries
    earliest: bool = False  # constrained only: a repeated text is its earliest occurrence (offsets untrained)
    answer: AnswerFormat = field(default_factory=lambda: answer_format("json"))
    jump_forward: bool = False  # constrained only: forced token runs fed in one forward pass
    share_prefix: bool = False  # the prefix every prompt shares prefilled once per call
    draft_tokens: int = 0  # constrained copy formats only: copy drafts of this many tokens checked per pass
    generated_tokens: int = 0  # answer tokens generated so far (stop tokens excluded), for new tokens/s
    _vocab: TokenVocab | None = field(default=None, repr=False)

    @property
    def vocab(self) -> TokenVocab:
        """The token trie, built on first use (only constrained decoding needs it)."""
        if self._vocab is None:
            self._vocab = TokenVocab(self.tokenizer)
        return self._vocab

    def answers(
        self,
        model: torch.nn.Module,
        prompts: Sequence[list[int]],
        texts: Sequence[str],
        on_done: Callable[[int], object] | None = None,
    ) -> list[str]:
        """The decoded answer to each prompt; `texts` are the units the prompts ask about; `on_done(n)` hears
        of finished answers."""
        constraint = None
        if self.decoding == "constrained":
            constraint = SchemaConstraint(
                self.vocab,
                texts,
                self.types,
                self.stop_ids,
                self.max_new_tokens,
                self.entity_bias,
                self.whole_words,
                self.earliest,
                self.answer,
                self.jump_forward,
                self.draft_tokens,
            )
        ids = generate(
            model,
            prompts,
            self.tokenizer.pad_token_id,
            self.stop_ids,
            self.budget(texts),
            self.batch_size,
            self.precision,
            constraint,
            on_done,
            self.share_prefix,
        )
        self.generated_tokens += sum(len(a) for a in ids)
        return [self.tokenizer.decode(a, skip_special_tokens=True) for a in ids]

    def budget(self, texts: Sequence[str]) -> int:
        """New tokens allowed per answer: `max_new_tokens` for a JSON list; for a copy format, `max_new_tokens`
        plus what copying the longest unit costs (constrained: its bytes, so the copy is always complete)."""
        if not self.answer.copies_input or not texts:
            return self.max_new_tokens
        if self.decoding == "constrained":
            return max(
                self.answer.constrained_budget(self.max_new_tokens, text, self.types) for text in texts
            )
        longest = max(len(ids) for ids in self.tokenizer(list(texts), add_special_tokens=False)["input_ids"])
        return self.answer.budget(self.max_new_tokens, longest)

    def answer_split(
        self,
        model: torch.nn.Module,
        split: PromptSplit,
        indices: Sequence[int],
        progress: str | None = None,
        enabled: bool | None = None,
    ) -> list[str]:
        """Answers for some units of a split; with a `progress` description, under a bar (clinical_ner/console/progress.py)."""
        prompts, texts = [split.prompts[i] for i in indices], [split.units[i].text for i in indices]
        if progress is None:
            return self.answers(model, prompts, texts)
        with bar(desc=progress, unit="unit", total=len(prompts), enabled=enabled) as shown:
            return self.answers(model, prompts, texts, shown.update)


def spans_from_answers(
    split: PromptSplit, answers: Mapping[int, str], types: Sequence[str], answer: AnswerFormat | None = None
) -> dict[str, list[Span]]:
    """Predicted spans per document (every document present, empty when nothing was found), answers read in
    the `answer` format (JSON by default)."""
    answer = answer or answer_format("json")
    spans: dict[str, set[Span]] = {doc.id: set() for doc in split.docs}
    for index, raw in answers.items():
        unit = split.units[index]
        spans[unit.doc_id].update(unit.to_document(s) for s in answer.parse(raw, unit.text, types))
    return {doc_id: sorted(found) for doc_id, found in spans.items()}


def evaluate_answers(
    split: PromptSplit, answers: Mapping[int, str], types: Sequence[str], answer: AnswerFormat | None = None
) -> tuple[dict, dict[str, list[Span]]]:
    """Official-rule span scores (codalab) plus the format's metrics over the answered units, and the spans."""
    answer = answer or answer_format("json")
    spans = spans_from_answers(split, answers, types, answer)
    docs = {doc.id: doc for doc in split.docs}
    samples = [
        Sample(raw, split.units[i].text, target_entities(split.units[i], docs[split.units[i].doc_id].spans))
        for i, raw in sorted(answers.items())
    ]
    metrics = score_documents(split.docs, spans, rule="codalab").to_dict()
    metrics.update(answer.metrics(samples, types))
    return metrics, spans


def tag_with_seq2seq(
    folder: Path,
    tokenizer: PreTrainedTokenizerBase,
    settings: Seq2seqInference,
    docs: list[Document],
    batch_size: int | None,
) -> dict[str, list[Span]]:
    """Predicted spans per document id from a saved seq2seq run (`predict`), prompted and decoded as in training."""
    if is_adapter_folder(folder):  # a QLoRA run: rebuild the 4-bit base, attach the adapter
        model = load_adapter(folder, AutoModelForCausalLM)
    else:
        model = AutoModelForCausalLM.from_pretrained(folder, trust_remote_code=False, use_safetensors=True)
    renderer = settings.prompt.renderer(tokenizer)
    decoder = Seq2SeqDecoder(
        tokenizer,
        renderer.stop_ids,
        list(settings.types),
        str(settings.decoding),
        settings.max_new_tokens,
        batch_size or settings.eval_batch_size,
        settings.precision,
        settings.entity_bias,
        settings.whole_words,
        settings.earliest,
        answer_format(settings.format),
        settings.jump_forward,
        settings.share_prefix,
        settings.draft_tokens,
    )
    split = prompt_split(docs, renderer, str(settings.unit))
    answers = decoder.answer_split(model, split, range(len(split.units)), progress="generating")
    return spans_from_answers(split, dict(enumerate(answers)), decoder.types, decoder.answer)

"""The seq2seq stage: a causal Llama answers an instruction in the run's answer format (a JSON list of entities,
the text with inline markers, or every word with its label: approaches/seq2seq/formats/); answers are parsed
back to character spans (the shared skeleton is clinical_ner/training/stage.py). Model selection generates
answers for a fixed sample of `approach.val_limit` dev documents at each validation; the results score all of dev."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import lightning as L
import torch
from transformers import PreTrainedTokenizerBase

from clinical_ner.approaches.seq2seq.datamodule import PromptSplit, Seq2SeqDataModule, prompt_split
from clinical_ner.approaches.seq2seq.formats import answer_format
from clinical_ner.approaches.seq2seq.inference import (
    PromptSettings,
    Seq2SeqDecoder,
    Seq2seqInference,
    evaluate_answers,
    tag_with_seq2seq,
)
from clinical_ner.approaches.seq2seq.module import Seq2SeqModule
from clinical_ner.approaches.seq2seq.prompt import make_renderer
from clinical_ner.config import TrainConfig
from clinical_ner.data.types import Document
from clinical_ner.models.backbone import build_causal_lm
from clinical_ner.models.weights import instruct_weights
from clinical_ner.training.fit import Fit
from clinical_ner.training.optim import OptimSpec
from clinical_ner.training.stage import FineTuneStage, SplitPrediction


def trains_offsets(approach) -> bool:
    """Whether start/end digits are in the loss: `approach.offset_loss`, by default only for free decoding
    (constrained decoding writes them: the earliest occurrence of a text when they were not trained)."""
    return approach.offset_loss if approach.offset_loss is not None else approach.decoding == "free"


def jumps_forward(approach) -> bool:
    """Whether constrained decoding feeds forced runs in one pass: `approach.jump_forward`, by default only for
    the copy formats (the JSON path keeps its step-by-step numbers)."""
    if approach.jump_forward is not None:
        return approach.jump_forward
    return answer_format(approach.format).copies_input


DRAFT_TOKENS = 32  # a PharmaCoNER sentence is ~40 tokens; a longer draft wastes more after each marker


def draft_tokens(approach) -> int:
    """Copy-draft length of constrained decoding: `approach.draft_tokens`, by default DRAFT_TOKENS for the copy
    formats and 0 for JSON (whose answer is no copy)."""
    if approach.draft_tokens is not None:
        return approach.draft_tokens
    return DRAFT_TOKENS if answer_format(approach.format).copies_input else 0


SPLITS = ("dev", "test")  # what the run predicts after fitting


class Seq2seqStage(FineTuneStage):
    """Seq2seq: prompt units (sentences or documents) answered in JSON, decoded free or schema-constrained."""

    lora_task = "CAUSAL_LM"
    settings_type = Seq2seqInference
    tag = staticmethod(tag_with_seq2seq)

    @classmethod
    def instruct(cls, cfg: TrainConfig) -> bool:
        """One rule for tokenizer, weights and prompt (`instruct_weights`): instruct weights get the instruct
        tokenizer, its chat template and end of turn; base-derived (continually pretrained) or random weights
        the base tokenizer (the one pretraining used), the plain template and its EOS."""
        return instruct_weights(cfg.scale, cfg.corpus.name)

    def __init__(
        self,
        cfg: TrainConfig,
        tokenizer: PreTrainedTokenizerBase,
        types: list[str],
        splits: Mapping[str, list[Document]],
    ) -> None:
        super().__init__(cfg, tokenizer, types, splits)
        self.answer = answer_format(cfg.approach.format)
        self.answer.check_types(types)
        self.renderer = make_renderer(
            cfg.approach.prompt, tokenizer, types, self.instruct(cfg), str(cfg.approach.format)
        )
        self.prompts: dict[str, PromptSplit] = {}  # dev and test prompts, encoded with the datamodule
        approach = cfg.approach
        self.decoder = Seq2SeqDecoder(
            tokenizer,
            self.renderer.stop_ids,
            types,
            str(approach.decoding),
            approach.max_new_tokens,
            cfg.data.eval_batch_size,
            cfg.trainer.precision,
            approach.entity_bias,
            approach.whole_words,
            earliest=not trains_offsets(approach),
            answer=self.answer,
            jump_forward=jumps_forward(approach),
            share_prefix=approach.share_prefix,
            draft_tokens=draft_tokens(approach),
        )

    def build_model(self, init_from: Path | None) -> torch.nn.Module:
        return build_causal_lm(
            self.cfg.model,
            self.cfg.scale,
            self.tokenizer,
            instruct=self.instruct(self.cfg),
            init_from=str(init_from) if init_from is not None else None,
            quantization=self.cfg.quantization,
            devices=self.cfg.trainer.devices,
        )

    def build_datamodule(self) -> Seq2SeqDataModule:
        cfg, approach = self.cfg, self.cfg.approach
        # every dev and test document is answered after fitting (selection uses a sample of dev): encoded here
        self.prompts = {
            split: prompt_split(self.splits[split], self.renderer, approach.unit) for split in SPLITS
        }
        return Seq2SeqDataModule(
            self.splits,
            self.renderer,
            str(approach.unit),
            approach.max_length,
            cfg.data.batch_size,
            cfg.data.eval_batch_size,
            cfg.seed,
            approach.val_limit,
            cfg.data.mega_batch_factor,
            cfg.data.group_by_length,
            approach.empty_fraction,
            # the offsets' digits are learned only when the model must write them itself
            trains_offsets(approach),
            self.answer,
        )

    def build_module(self, model: torch.nn.Module, data: Seq2SeqDataModule) -> Seq2SeqModule:
        return Seq2SeqModule(
            model,
            OptimSpec.from_config(self.cfg.optim),
            answer=lambda m, indices: self.decoder.answer_split(m, data.val, indices),
            evaluate=lambda answers: evaluate_answers(data.val, answers, self.types, self.answer)[0],
            logged=self.answer.logged,
            share_prefix=self.cfg.approach.share_prefix,
        )

    def after_fit(self, module: L.LightningModule, fit: Fit) -> None:
        module.model.to(fit.trainer.strategy.root_device)  # each DDP rank generates on its own device

    def selection_documents(self, data: Seq2SeqDataModule) -> int:
        return len(data.val.docs)  # the seeded `val_limit` sample of dev

    def predict(self, model: torch.nn.Module, data: Seq2SeqDataModule, split: str) -> tuple[list[str], int]:
        """The answers to every prompt of `split` (selection used a sample of dev), and the tokens generated."""
        prompts = self.prompts[split]
        self.decoder.generated_tokens = 0
        answers = self.decoder.answer_split(
            model,
            prompts,
            range(len(prompts.units)),
            f"{split}: generating",
            self.cfg.trainer.enable_progress_bar,
        )
        return answers, self.decoder.generated_tokens

    def score(self, data: Seq2SeqDataModule, split: str, raw: tuple[list[str], int]) -> SplitPrediction:
        answers, new_tokens = raw
        prompts = self.prompts[split]
        metrics, spans = evaluate_answers(prompts, dict(enumerate(answers)), self.types, self.answer)
        return SplitPrediction(prompts.docs, spans, metrics, new_tokens)

    def split_section(self, predicted: SplitPrediction, seconds: float) -> dict:
        # generation + parsing speed on every split; what constrained decoding makes true by construction
        guaranteed = list(self.answer.guaranteed) if self.cfg.approach.decoding == "constrained" else []
        return {
            **predicted.metrics,
            "documents_per_s": len(predicted.docs) / seconds if seconds else 0.0,
            "guaranteed_by_decoder": guaranteed,
        }

    def inference_settings(self) -> Seq2seqInference:
        approach = self.cfg.approach
        return Seq2seqInference(
            precision=self.cfg.trainer.precision,
            eval_batch_size=self.cfg.data.eval_batch_size,
            unit=approach.unit,
            decoding=approach.decoding,
            max_new_tokens=approach.max_new_tokens,
            types=list(self.types),
            prompt=PromptSettings.of(self.renderer),
            entity_bias=approach.entity_bias,
            whole_words=approach.whole_words,
            earliest=not trains_offsets(approach),
            format=str(approach.format),
            jump_forward=jumps_forward(approach),
            share_prefix=approach.share_prefix,
            draft_tokens=draft_tokens(approach),
        )

    def train_extras(self, data: Seq2SeqDataModule) -> dict:
        return {
            "skipped_examples": data.skipped,  # longer than approach.max_length
            "prompt_template": "chat" if self.renderer.chat else "plain",  # what auto or the recipe chose
        }

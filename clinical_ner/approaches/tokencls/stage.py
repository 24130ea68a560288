"""The token-classification stage: a linear head over the sub-tokens of a (bidirectional) Llama; windows in,
tag ids out, decoded to character spans (the shared skeleton is clinical_ner/training/stage.py)."""

from __future__ import annotations

from functools import cached_property
from pathlib import Path

import lightning as L
import torch
from transformers import PreTrainedTokenizerBase

from clinical_ner.approaches.tokencls.datamodule import TokenClsDataModule, Windowing
from clinical_ner.approaches.tokencls.inference import (
    TokenClsInference,
    evaluate_predictions,
    predict_windows,
    tag_with_tokencls,
)
from clinical_ner.approaches.tokencls.module import TokenClsModule
from clinical_ner.approaches.tokencls.tagging import bio_labels
from clinical_ner.console.progress import bar
from clinical_ner.data.batching import Batching
from clinical_ner.models.backbone import TOKEN_CLS_HEAD, build_token_classifier
from clinical_ner.models.tokenizer import standalone_tokenizer
from clinical_ner.training.optim import OptimSpec
from clinical_ner.training.stage import FineTuneStage, SplitPrediction


class TokenClsStage(FineTuneStage):
    """Token classification: BIO tags of the corpus types, one label per word (or sub-token)."""

    lora_task = "TOKEN_CLS"
    lora_modules_to_save = [TOKEN_CLS_HEAD]  # the new head trains in full beside the adapters
    compiles = True
    settings_type = TokenClsInference
    tag = staticmethod(tag_with_tokencls)

    @cached_property
    def id2label(self) -> dict[int, str]:
        return dict(enumerate(bio_labels(self.types)))

    def build_model(self, init_from: Path | None) -> torch.nn.Module:
        return build_token_classifier(
            self.cfg.model,
            self.cfg.scale,
            self.tokenizer,
            bio_labels(self.types),
            bidirectional=self.cfg.approach.attention == "bidirectional",
            init_from=str(init_from) if init_from is not None else None,
            quantization=self.cfg.quantization,
            devices=self.cfg.trainer.devices,
        )

    def build_datamodule(self) -> TokenClsDataModule:
        label2id = {label: i for i, label in self.id2label.items()}
        windowing = Windowing.from_config(self.cfg.approach)
        return TokenClsDataModule(
            self.splits, self.tokenizer, label2id, windowing, Batching.from_config(self.cfg)
        )

    def _score(self, data: TokenClsDataModule, split: str, predictions: dict[int, list[int]]) -> tuple:
        approach = self.cfg.approach
        return evaluate_predictions(
            data.encoded[split], predictions, self.id2label, approach.label_position, approach.ill_formed
        )

    def build_module(self, model: torch.nn.Module, data: L.LightningDataModule) -> TokenClsModule:
        return TokenClsModule(
            model,
            OptimSpec.from_config(self.cfg.optim),
            lambda predictions: self._score(data, "dev", predictions)[0],
            pad_id=self.tokenizer.pad_token_id,
            token_dropout=self.cfg.approach.token_dropout,
        )

    def selection_documents(self, data: TokenClsDataModule) -> int:
        return len(data.encoded["dev"].docs)  # selection scores all of dev

    def predict(self, model: torch.nn.Module, data: TokenClsDataModule, split: str) -> dict[int, list[int]]:
        batches = bar(
            data.eval_dataloader(split),
            desc=f"{split}: tagging",
            unit="batch",
            enabled=self.cfg.trainer.enable_progress_bar,
        )
        return predict_windows(model, batches, self.cfg.trainer.precision)

    def score(self, data: TokenClsDataModule, split: str, raw: dict[int, list[int]]) -> SplitPrediction:
        metrics, spans = self._score(data, split, raw)
        return SplitPrediction(data.encoded[split].docs, spans, metrics)

    def saved_tokenizer(self) -> PreTrainedTokenizerBase:
        # also serves `transformers.pipeline`: BOS as in training, the training window as model_max_length
        return standalone_tokenizer(self.tokenizer, self.cfg.approach.max_length)

    def inference_settings(self) -> TokenClsInference:
        approach = self.cfg.approach
        return TokenClsInference(
            precision=self.cfg.trainer.precision,
            eval_batch_size=self.cfg.data.eval_batch_size,
            label_position=approach.label_position,
            ill_formed=approach.ill_formed,
            max_length=approach.max_length,
            stride=approach.stride,
        )

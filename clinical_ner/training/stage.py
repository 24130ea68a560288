"""The fine-tuning stage of a run, one skeleton for every approach.

`run_stage` does what all approaches share: the model (+ LoRA), the datamodule and LightningModule, fit and
select on dev F1, dev and test prediction, scoring, BRAT files, the saved model and the results sections. A
`FineTuneStage` (clinical_ner/approaches/<name>/stage.py) supplies only what differs between approaches; the
registry in clinical_ner/run/registry.py maps `approach.name` to it.
"""

from __future__ import annotations

import logging
import time
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import lightning as L
import torch
from transformers import PreTrainedTokenizerBase

from clinical_ner.config import TrainConfig
from clinical_ner.data.brat import write_predictions
from clinical_ner.data.ner_corpus import limit_splits
from clinical_ner.data.types import Document, Span
from clinical_ner.inference_settings import InferenceSettings
from clinical_ner.models.backbone import apply_lora, count_parameters
from clinical_ner.run_folder import RunFolder
from clinical_ner.training.finetune import Fit, fit_and_select, inference_section, log_final, save_model
from clinical_ner.training.inputs import RunInputs

log = logging.getLogger(__name__)


@dataclass
class SplitPrediction:
    """One split predicted and scored: its documents, the spans found per document id, its results section."""

    docs: list[Document]
    spans: dict[str, list[Span]]
    metrics: dict


class FineTuneStage(ABC):
    """What one approach adds to `run_stage`. One instance per run, holding the run's config, tokenizer,
    entity types and (limited) splits."""

    instruct: ClassVar[bool] = False  # paper scale: the instruct checkpoint's tokenizer and weights
    lora_task: ClassVar[str]  # peft task type of `approach.finetune=lora`
    lora_modules_to_save: ClassVar[list[str] | None] = None  # modules trained in full beside the adapters
    compiles: ClassVar[bool] = False  # whether `trainer.compile` applies (seq2seq generation is not compiled)
    settings_type: ClassVar[type[InferenceSettings]]  # what `inference_settings` returns and `tag` reads

    def __init__(
        self,
        cfg: TrainConfig,
        tokenizer: PreTrainedTokenizerBase,
        types: list[str],
        splits: Mapping[str, list[Document]],
    ) -> None:
        self.cfg = cfg
        self.tokenizer = tokenizer
        self.types = types
        self.splits = splits

    @abstractmethod
    def build_model(self, init_from: Path | None) -> torch.nn.Module:
        """The model before LoRA; `init_from`: a continually pretrained causal-LM folder to start from."""

    @abstractmethod
    def build_datamodule(self) -> L.LightningDataModule:
        """The training and dev batches of `self.splits`."""

    @abstractmethod
    def build_module(self, model: torch.nn.Module, data: L.LightningDataModule) -> L.LightningModule:
        """The LightningModule that trains `model` and scores dev at each validation."""

    def after_fit(self, module: L.LightningModule, fit: Fit) -> None:
        """Anything the best weights need before prediction (nothing by default)."""
        return None

    @abstractmethod
    def predict(self, model: torch.nn.Module, data: L.LightningDataModule, split: str) -> SplitPrediction:
        """Predict and score `split` (`dev` or `test`)."""

    @abstractmethod
    def inference_settings(self) -> InferenceSettings:
        """What `predict` needs besides weights and tokenizer to decode exactly as the run did."""

    def saved_tokenizer(self) -> PreTrainedTokenizerBase:
        """The tokenizer saved beside the weights (the run's own by default)."""
        return self.tokenizer

    def train_extras(self, data: L.LightningDataModule) -> dict:
        """Approach-specific keys of the `train` section of results.json (none by default)."""
        return {}

    @staticmethod
    @abstractmethod
    def tag(
        folder: Path,
        tokenizer: PreTrainedTokenizerBase,
        settings: InferenceSettings,
        docs: list[Document],
        batch_size: int | None,
    ) -> dict[str, list[Span]]:
        """Spans per document id from a saved model folder (`python -m clinical_ner.predict`)."""


def run_stage(
    cfg: TrainConfig,
    run_dir: Path,
    stage_class: type[FineTuneStage],
    inputs: RunInputs,
    init_from: Path | None = None,
    logger=None,
) -> dict:
    """Train, select on dev F1, predict and score dev and test, write predictions and the model; return the
    results sections (`dev`, `test`, `inference`, `train`). `logger`: the cell's experiment logger."""
    stage = stage_class(
        cfg, inputs.tokenizer(stage_class.instruct), inputs.types, limit_splits(inputs.splits, cfg.data)
    )
    model = stage.build_model(init_from)
    if cfg.approach.finetune == "lora":
        model = apply_lora(
            model,
            cfg.approach.lora,
            stage.lora_task,
            modules_to_save=stage.lora_modules_to_save,
            gradient_checkpointing=cfg.trainer.gradient_checkpointing,
        )
    if cfg.trainer.compile and stage.compiles:
        model = torch.compile(model)
    trainable, total = count_parameters(model)
    log.info("model: %s parameters, %s trainable", f"{total:,}", f"{trainable:,}")

    data = stage.build_datamodule()
    module = stage.build_module(model, data)
    fit = fit_and_select(cfg, run_dir, module, data, logger)
    stage.after_fit(module, fit)

    sections: dict = {}
    for split in ("dev", "test"):
        start = time.perf_counter()
        predicted = stage.predict(module.model, data, split)
        seconds = time.perf_counter() - start
        write_predictions(
            RunFolder(run_dir).predictions(split),
            {doc.id: (doc.text, predicted.spans[doc.id]) for doc in predicted.docs},
        )
        sections[split] = predicted.metrics
        if split == "test":
            sections["inference"] = inference_section(len(predicted.docs), seconds)

    if cfg.save_model:
        save_model(
            module.model, stage.saved_tokenizer(), RunFolder(run_dir).model, stage.inference_settings()
        )
    sections["train"] = {**fit.train_section((trainable, total)), **stage.train_extras(data)}
    log_final(fit.logger, sections)
    return sections

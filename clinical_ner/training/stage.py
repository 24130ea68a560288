"""The fine-tuning stage of a run, one skeleton for every approach.

`run_stage` does what all approaches share: the model (+ LoRA), the datamodule and LightningModule, fit and
select on dev F1, dev and test prediction, scoring, BRAT files, the saved model and the results sections, each
timed as a phase (clinical_ner/training/timings.py). A
`FineTuneStage` (clinical_ner/approaches/<name>/stage.py) supplies only what differs between approaches; the
registry in clinical_ner/run/registry.py maps `approach.name` to it.
"""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import lightning as L
import torch
from transformers import PreTrainedTokenizerBase

from clinical_ner.config import TrainConfig
from clinical_ner.data.brat import write_predictions
from clinical_ner.data.ner_corpus import limit_splits
from clinical_ner.data.types import Document, Span
from clinical_ner.models.backbone import count_parameters
from clinical_ner.models.lora import apply_lora
from clinical_ner.run.record.folder import RunFolder
from clinical_ner.training.fit import Fit, fit_and_select
from clinical_ner.training.inference_settings import InferenceSettings
from clinical_ner.training.inputs import RunInputs
from clinical_ner.training.saving import save_model
from clinical_ner.training.timings import phase

log = logging.getLogger(__name__)


@dataclass
class SplitPrediction:
    """One split predicted and scored: its documents, the spans found per document id, its results section."""

    docs: list[Document]
    spans: dict[str, list[Span]]
    metrics: dict
    new_tokens: int | None = None  # answer tokens generated (generative approaches), for new tokens/s


class FineTuneStage(ABC):
    """What one approach adds to `run_stage`. One instance per run, holding the run's config, tokenizer,
    entity types and (limited) splits."""

    lora_task: ClassVar[str]  # peft task type of `approach.finetune=lora`
    lora_modules_to_save: ClassVar[list[str] | None] = None  # modules trained in full beside the adapters
    compiles: ClassVar[bool] = False  # whether `trainer.compile` applies (seq2seq generation is not compiled)
    settings_type: ClassVar[type[InferenceSettings]]  # what `inference_settings` returns and `tag` reads

    @classmethod
    def instruct(cls, cfg: TrainConfig) -> bool:
        """Whether the run fine-tunes the instruct checkpoint (its tokenizer and weights); never by default."""
        return False

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
    def selection_documents(self, data: L.LightningDataModule) -> int:
        """How many dev documents each validation scores (model selection)."""

    @abstractmethod
    def predict(self, model: torch.nn.Module, data: L.LightningDataModule, split: str) -> Any:
        """The model's raw output on every document of `split` (`dev` or `test`): its forward passes or
        generation, timed as phase `predict_<split>`."""

    @abstractmethod
    def score(self, data: L.LightningDataModule, split: str, raw: Any) -> SplitPrediction:
        """`predict`'s output decoded to spans and scored (phase `score_<split>`)."""

    def split_section(self, predicted: SplitPrediction, seconds: float) -> dict:
        """The results section of a scored split (`seconds`: its prediction and scoring); its metrics by default."""
        return predicted.metrics

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
    results sections (`dev`, `test`, `inference`, `selection`, `train`). Ranks > 0 of a multi-device job
    return nothing after training: rank 0 alone predicts, scores and saves. `logger`: the cell's experiment
    logger."""
    with phase("load_tokenizer"):
        tokenizer = inputs.tokenizer(stage_class.instruct(cfg))
    stage = stage_class(cfg, tokenizer, inputs.types, limit_splits(inputs.splits, cfg.data))
    with phase("load_model"):
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

    with phase("encode"):
        data = stage.build_datamodule()
    module = stage.build_module(model, data)
    fit = fit_and_select(cfg, run_dir, module, data, logger)  # phases `fit` and `select`
    if not fit.predicts_here():
        return {}
    stage.after_fit(module, fit)

    sections: dict = {}
    scored: dict[str, SplitPrediction] = {}
    for split in ("dev", "test"):
        with phase(f"predict_{split}") as predicting:
            raw = stage.predict(module.model, data, split)
        with phase(f"score_{split}") as scoring:
            scored[split] = stage.score(data, split, raw)
        log_scores(split, scored[split])
        seconds = predicting.seconds + scoring.seconds
        sections[split] = stage.split_section(scored[split], seconds)
        if split == "test":
            test = scored[split]
            sections["inference"] = inference_section(
                len(test.docs), seconds, test.new_tokens, predicting.seconds
            )

    with phase("save"):
        for split, predicted in scored.items():
            write_predictions(
                RunFolder(run_dir).predictions(split),
                {doc.id: (doc.text, predicted.spans[doc.id]) for doc in predicted.docs},
            )
        if cfg.save_model:
            save_model(
                module.model, stage.saved_tokenizer(), RunFolder(run_dir).model, stage.inference_settings()
            )
    sections["selection"] = fit.selection_section(stage.selection_documents(data))
    sections["train"] = {**fit.train_section((trainable, total)), **stage.train_extras(data)}
    log_final(fit.logger, sections)
    return sections


def log_scores(split: str, predicted: SplitPrediction) -> None:
    """One line per scored split, as soon as it is scored (dev's comes a whole test prediction before the end)."""
    m = predicted.metrics
    if all(isinstance(m.get(key), int | float) for key in ("f1", "precision", "recall")):
        log.info(
            "%s: F1 %.4f, precision %.4f, recall %.4f (%d documents)",
            split, m["f1"], m["precision"], m["recall"], len(predicted.docs),
        )  # fmt: skip


def inference_section(
    documents: int, seconds: float, new_tokens: int | None = None, generation_seconds: float = 0.0
) -> dict:
    """The `inference` section of results.json (test prediction and decoding); generative approaches add the
    answer tokens generated (`new_tokens`) and their rate over the `generation_seconds`."""
    section = {
        "documents": documents,
        "seconds": seconds,
        "documents_per_s": documents / seconds if seconds else 0.0,
    }
    if new_tokens is not None:
        section["new_tokens"] = new_tokens  # stop tokens excluded
        section["new_tokens_per_s"] = new_tokens / generation_seconds if generation_seconds else 0.0
    return section


def log_final(logger, sections: dict) -> None:
    """Dev and test P/R/F1 to the experiment logger."""
    if logger is not None:
        logger.log_metrics(
            {
                f"{split}/{key}": float(sections[split][key])
                for split in ("dev", "test")
                for key in ("precision", "recall", "f1")
            }
        )

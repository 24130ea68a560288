"""The token-classification stage of a run: fit on train, select on dev F1, predict and score test."""

from __future__ import annotations

import logging
from pathlib import Path

import hydra
import torch

from clinical_ner.approaches.tokencls.datamodule import TokenClsDataModule
from clinical_ner.approaches.tokencls.inference import evaluate_predictions, predict_windows
from clinical_ner.approaches.tokencls.module import TokenClsModule
from clinical_ner.approaches.tokencls.tagging import bio_labels
from clinical_ner.config import TrainConfig
from clinical_ner.data.brat import write_predictions
from clinical_ner.data.ner_corpus import corpus_types, limit_splits, load_ner_splits
from clinical_ner.models.backbone import TOKEN_CLS_HEAD, apply_lora, build_token_classifier, count_parameters
from clinical_ner.models.factory import make_tokenizer
from clinical_ner.paths import cache_dir
from clinical_ner.run_folder import MODEL_DIR, PREDICTIONS_DIR
from clinical_ner.training.finetune import (
    fit_and_select,
    inference_section,
    log_final,
    save_model,
)
from clinical_ner.training.timings import phase

log = logging.getLogger(__name__)


def run_tokencls(cfg: TrainConfig, run_dir: Path, init_from: Path | None = None) -> dict:
    """Train, select, predict test, write predictions and the model; return the results sections.

    `init_from`: a continually pretrained causal-LM folder whose backbone replaces the base weights.
    """
    cache = cache_dir(cfg.cache_dir)
    with phase("load_corpus"):
        full = load_ner_splits(cfg.data, cache)
        labels = bio_labels(corpus_types(cfg.data, full))
        splits = limit_splits(full, cfg.data)
    id2label = dict(enumerate(labels))
    label2id = {label: i for i, label in id2label.items()}
    with phase("load_tokenizer"):
        # one fixed text per family (all train + dev), so limits or seeds never change the tokenizer
        texts = [doc.text for doc in full["train"] + full["dev"]]
        tokenizer = make_tokenizer(cfg.model, cfg.scale, texts, cache)

    approach = cfg.approach
    with phase("load_model"):
        model = build_token_classifier(
            cfg.model,
            cfg.scale,
            tokenizer,
            labels,
            bidirectional=approach.attention == "bidirectional",
            init_from=str(init_from) if init_from is not None else None,
            quantization=cfg.quantization,
        )
        if approach.finetune == "lora":
            model = apply_lora(
                model,
                approach.lora,
                "TOKEN_CLS",
                modules_to_save=[TOKEN_CLS_HEAD],
                gradient_checkpointing=cfg.trainer.gradient_checkpointing,
            )
        if cfg.trainer.compile:
            model = torch.compile(model)
    trainable, total = count_parameters(model)
    log.info("model: %s parameters, %s trainable", f"{total:,}", f"{trainable:,}")

    with phase("encode"):
        data = TokenClsDataModule(
            splits,
            tokenizer,
            label2id,
            approach.label_position,
            approach.max_length,
            approach.stride,
            cfg.data.batch_size,
            cfg.data.eval_batch_size,
            cfg.seed,
            cfg.data.mega_batch_factor,
            cfg.data.group_by_length,
            cfg.data.num_workers,
        )

    def evaluate_dev(predictions: dict[int, list[int]]) -> dict:
        metrics, _ = evaluate_predictions(
            data.encoded["dev"], predictions, id2label, approach.label_position, approach.ill_formed
        )
        return metrics

    module = TokenClsModule(
        model,
        hydra.utils.instantiate(cfg.optim.optimizer),
        cfg.optim.lr,
        cfg.optim.warmup_ratio,
        cfg.optim.min_lr_ratio,
        evaluate_dev,
        pad_id=tokenizer.pad_token_id,
        token_dropout=approach.token_dropout,
    )
    fit = fit_and_select(cfg, run_dir, module, data)

    precision = cfg.trainer.precision
    sections: dict = {}
    spans_by_split, seconds = {}, {}
    for split in ("dev", "test"):
        with phase(f"predict_{split}") as predicted:
            predictions = predict_windows(module.model, data.eval_dataloader(split), precision)
        with phase(f"score_{split}") as scored:
            sections[split], spans_by_split[split] = evaluate_predictions(
                data.encoded[split], predictions, id2label, approach.label_position, approach.ill_formed
            )
        seconds[split] = predicted.seconds + scored.seconds
    sections["inference"] = inference_section(len(data.encoded["test"].docs), seconds["test"])

    with phase("save"):
        for split, spans in spans_by_split.items():
            docs = data.encoded[split].docs
            write_predictions(
                run_dir / PREDICTIONS_DIR / split, {doc.id: (doc.text, spans[doc.id]) for doc in docs}
            )
        if cfg.save_model:
            save_model(module.model, tokenizer, run_dir / MODEL_DIR, inference_settings(cfg))
    sections["train"] = fit.train_section((trainable, total))
    log_final(fit.logger, sections)
    return sections


def inference_settings(cfg: TrainConfig) -> dict:
    """What `predict` needs besides weights and tokenizer to reproduce the run's decoding."""
    approach = cfg.approach
    return {
        "approach": approach.name,
        "label_position": approach.label_position,
        "ill_formed": approach.ill_formed,
        "max_length": approach.max_length,
        "stride": approach.stride,
        "precision": cfg.trainer.precision,
        "eval_batch_size": cfg.data.eval_batch_size,
    }

"""The seq2seq stage of a run: fit on train, select on dev F1 of generated answers, generate and score test."""

from __future__ import annotations

import logging
import time
from pathlib import Path

import hydra
from transformers import PreTrainedTokenizerBase

from clinical_ner.approaches.seq2seq.datamodule import Seq2SeqDataModule, prompt_split
from clinical_ner.approaches.seq2seq.inference import Seq2SeqDecoder, evaluate_answers
from clinical_ner.approaches.seq2seq.module import Seq2SeqModule
from clinical_ner.approaches.seq2seq.prompt import PromptRenderer, make_renderer
from clinical_ner.config import TrainConfig
from clinical_ner.data.brat import write_predictions
from clinical_ner.data.ner_corpus import corpus_types, limit_splits, load_ner_splits
from clinical_ner.models.backbone import apply_lora, build_causal_lm, count_parameters, instruct_weights
from clinical_ner.models.factory import make_tokenizer
from clinical_ner.paths import cache_dir
from clinical_ner.run_folder import MODEL_DIR, PREDICTIONS_DIR
from clinical_ner.training.finetune import (
    fit_and_select,
    inference_section,
    log_final,
    save_model,
)

log = logging.getLogger(__name__)


def run_seq2seq(cfg: TrainConfig, run_dir: Path, init_from: Path | None = None) -> dict:
    """Train, select, generate dev and test answers, write predictions and the model; return results sections.

    `init_from`: a continually pretrained causal-LM folder, loaded as the starting weights.
    """
    cache = cache_dir(cfg.cache_dir)
    full = load_ner_splits(cfg.data, cache)
    types = corpus_types(cfg.data, full)
    # the same tokenizer text as every other stage, so a pretrained folder's vocabulary matches
    texts = [doc.text for doc in full["train"] + full["dev"]]
    tokenizer, renderer = prompting(cfg, texts, types, cache)
    splits = limit_splits(full, cfg.data)
    approach = cfg.approach

    model = build_causal_lm(
        cfg.model,
        cfg.scale,
        tokenizer,
        instruct=instruct_weights(cfg.scale, cfg.corpus.name),
        init_from=str(init_from) if init_from is not None else None,
        quantization=cfg.quantization,
    )
    if approach.finetune == "lora":
        model = apply_lora(
            model,
            approach.lora,
            "CAUSAL_LM",
            modules_to_save=None,
            gradient_checkpointing=cfg.trainer.gradient_checkpointing,
        )
    trainable, total = count_parameters(model)
    log.info("model: %s parameters, %s trainable", f"{total:,}", f"{trainable:,}")

    data = Seq2SeqDataModule(
        splits,
        renderer,
        str(approach.unit),
        approach.max_length,
        cfg.data.batch_size,
        cfg.data.eval_batch_size,
        cfg.seed,
        approach.val_limit,
        cfg.data.mega_batch_factor,
        cfg.data.group_by_length,
        approach.empty_fraction,
        trains_offsets(approach),
    )
    decoder = Seq2SeqDecoder(
        tokenizer,
        renderer.stop_ids,
        types,
        str(approach.decoding),
        approach.max_new_tokens,
        cfg.data.eval_batch_size,
        cfg.trainer.precision,
        approach.entity_bias,
        approach.whole_words,
        earliest=not trains_offsets(approach),
    )
    module = Seq2SeqModule(
        model,
        hydra.utils.instantiate(cfg.optim.optimizer),
        cfg.optim.lr,
        cfg.optim.warmup_ratio,
        cfg.optim.min_lr_ratio,
        answer=lambda m, indices: decoder.answer_split(m, data.val, indices),
        evaluate=lambda answers: evaluate_answers(data.val, answers, types)[0],
    )
    fit = fit_and_select(cfg, run_dir, module, data)
    module.model.to(fit.trainer.strategy.root_device)  # each DDP rank generates on its own device

    sections: dict = {}
    # every dev and test document (selection used a sample of dev: `selection` below), as token classification
    for split_name, split in (
        ("dev", prompt_split(splits["dev"], renderer, approach.unit)),
        ("test", prompt_split(splits["test"], renderer, approach.unit)),
    ):
        start = time.perf_counter()
        answers = decoder.answer_split(module.model, split, range(len(split.units)))
        metrics, spans = evaluate_answers(split, dict(enumerate(answers)), types)
        seconds = time.perf_counter() - start
        metrics["documents_per_s"] = len(split.docs) / seconds if seconds else 0.0
        write_predictions(
            run_dir / PREDICTIONS_DIR / split_name, {doc.id: (doc.text, spans[doc.id]) for doc in split.docs}
        )
        sections[split_name] = metrics
        if split_name == "test":
            sections["inference"] = inference_section(len(split.docs), seconds)

    if cfg.save_model:
        save_model(module.model, tokenizer, run_dir / MODEL_DIR, inference_settings(cfg, renderer, types))
    sections["selection"] = fit.selection_section(len(data.val.docs))
    sections["train"] = fit.train_section((trainable, total))
    sections["train"]["skipped_examples"] = data.skipped
    log_final(fit.logger, sections)
    return sections


def prompting(
    cfg: TrainConfig, texts: list[str], types: list[str], cache: Path
) -> tuple[PreTrainedTokenizerBase, PromptRenderer]:
    """The tokenizer and prompt renderer of a run, by one rule (`instruct_weights`): instruct weights get the
    instruct tokenizer, its chat template and end of turn; base-derived (continually pretrained) or random
    weights get the base tokenizer (the one pretraining used), the plain template and its EOS."""
    instruct = instruct_weights(cfg.scale, cfg.corpus.name)
    tokenizer = make_tokenizer(cfg.model, cfg.scale, texts, cache, instruct=instruct)
    return tokenizer, make_renderer(cfg.approach.prompt, tokenizer, types, instruct)


def trains_offsets(approach) -> bool:
    """Whether start/end digits are in the loss: `approach.offset_loss`, by default only for free decoding
    (constrained decoding writes them: the earliest occurrence of a text when they were not trained)."""
    return approach.offset_loss if approach.offset_loss is not None else approach.decoding == "free"


def inference_settings(cfg: TrainConfig, renderer, types: list[str]) -> dict:
    """What `predict` needs besides weights and tokenizer to prompt and decode exactly as the run did."""
    approach = cfg.approach
    return {
        "approach": approach.name,
        "unit": str(approach.unit),
        "decoding": str(approach.decoding),
        "max_new_tokens": approach.max_new_tokens,
        "entity_bias": approach.entity_bias,
        "whole_words": approach.whole_words,
        "earliest": not trains_offsets(approach),
        "types": list(types),
        "prompt": {
            "instruction": renderer.instruction,
            "user": renderer.user,
            "plain": renderer.plain,
            "chat": renderer.chat,
        },
        "precision": cfg.trainer.precision,
        "eval_batch_size": cfg.data.eval_batch_size,
    }

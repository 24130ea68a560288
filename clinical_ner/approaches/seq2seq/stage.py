"""The seq2seq stage of a run: fit on train, select on dev F1 of generated answers, generate and score test."""

from __future__ import annotations

import logging
from pathlib import Path

import hydra

from clinical_ner.approaches.seq2seq.datamodule import Seq2SeqDataModule, prompt_split
from clinical_ner.approaches.seq2seq.inference import Seq2SeqDecoder, evaluate_answers
from clinical_ner.approaches.seq2seq.module import Seq2SeqModule
from clinical_ner.approaches.seq2seq.prompt import make_renderer
from clinical_ner.config import TrainConfig
from clinical_ner.data.brat import write_predictions
from clinical_ner.data.ner_corpus import corpus_types, limit_splits, load_ner_splits
from clinical_ner.models.backbone import apply_lora, build_causal_lm, count_parameters
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


def run_seq2seq(cfg: TrainConfig, run_dir: Path, init_from: Path | None = None) -> dict:
    """Train, select, generate dev and test answers, write predictions and the model; return results sections.

    `init_from`: a continually pretrained causal-LM folder, loaded as the starting weights.
    """
    cache = cache_dir(cfg.cache_dir)
    with phase("load_corpus"):
        full = load_ner_splits(cfg.data, cache)
        types = corpus_types(cfg.data, full)
        splits = limit_splits(full, cfg.data)
    with phase("load_tokenizer"):
        # the same tokenizer text as every other stage, so a pretrained folder's vocabulary matches
        texts = [doc.text for doc in full["train"] + full["dev"]]
        tokenizer = make_tokenizer(cfg.model, cfg.scale, texts, cache, instruct=True)
    approach = cfg.approach

    renderer = make_renderer(approach.prompt, tokenizer, types, cfg.scale.pretrained)
    with phase("load_model"):
        model = build_causal_lm(
            cfg.model,
            cfg.scale,
            tokenizer,
            instruct=True,
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

    with phase("encode"):
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
            approach.offset_loss if approach.offset_loss is not None else approach.decoding == "free",
        )
        test = prompt_split(splits["test"], renderer, approach.unit)
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
    spans_by_split, seconds, generation = {}, {}, {}
    # dev: the selection subset (val_limit documents); test: every test document
    for split_name, split in (("dev", data.val), ("test", test)):
        decoder.generated_tokens = 0
        with phase(f"predict_{split_name}") as predicted:
            answers = decoder.answer_split(module.model, split, range(len(split.units)))
        with phase(f"score_{split_name}") as scored:
            metrics, spans_by_split[split_name] = evaluate_answers(split, dict(enumerate(answers)), types)
        seconds[split_name] = predicted.seconds + scored.seconds
        generation[split_name] = (decoder.generated_tokens, predicted.seconds)
        metrics["documents_per_s"] = len(split.docs) / seconds[split_name] if seconds[split_name] else 0.0
        sections[split_name] = metrics
    new_tokens, generation_seconds = generation["test"]
    sections["inference"] = {
        **inference_section(len(test.docs), seconds["test"]),
        "new_tokens": new_tokens,  # answer tokens generated for test (stop tokens excluded)
        "new_tokens_per_s": new_tokens / generation_seconds if generation_seconds else 0.0,
    }

    with phase("save"):
        for split_name, split in (("dev", data.val), ("test", test)):
            spans = spans_by_split[split_name]
            write_predictions(
                run_dir / PREDICTIONS_DIR / split_name,
                {doc.id: (doc.text, spans[doc.id]) for doc in split.docs},
            )
        if cfg.save_model:
            save_model(module.model, tokenizer, run_dir / MODEL_DIR, inference_settings(cfg, renderer, types))
    sections["train"] = fit.train_section((trainable, total))
    sections["train"]["skipped_examples"] = data.skipped
    log_final(fit.logger, sections)
    return sections


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

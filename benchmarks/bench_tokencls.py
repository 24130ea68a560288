"""Token-classification training throughput: our Lightning pipeline vs. a plain Hugging Face Trainer.

Same tiny model (same init), same windows, batch size, precision (bf16 autocast), thread count and compile
setting (off) on both sides, in one process; prints tokens/s of each, the ratio, and padding efficiency.
Usage: python benchmarks/bench_tokencls.py [--steps 60] [--batch-size 32] [--threads 2]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import lightning as L
import torch
from transformers import DataCollatorForTokenClassification, Trainer, TrainingArguments

from clinical_ner.approaches.tokencls.datamodule import TokenClsDataModule, Windowing
from clinical_ner.approaches.tokencls.module import TokenClsModule
from clinical_ner.approaches.tokencls.tagging import bio_labels
from clinical_ner.cache.location import cache_dir
from clinical_ner.config import compose_config
from clinical_ner.data.batching import Batching
from clinical_ner.data.brat import entity_types, read_split
from clinical_ner.data.synthetic import synthetic_splits
from clinical_ner.models.backbone import build_token_classifier
from clinical_ner.models.tokenizer import load_or_train_tokenizer
from clinical_ner.training.optim import OptimSpec

CFG = compose_config(["model=llama2", "scale=tiny"])  # the default tiny Llama 2 of a run
LLAMA2, TINY = CFG.model, CFG.scale


def load_docs() -> dict:
    root = os.environ.get("PHARMACONER_DIR")
    if root and Path(root, "train").is_dir():
        return {split: read_split(Path(root) / split) for split in ("train", "dev")}
    print("PHARMACONER_DIR not set: benchmarking on the synthetic corpus")
    return synthetic_splits(n_train=400, n_dev=20, n_test=0)


def fresh_model(tokenizer, labels):
    torch.manual_seed(0)
    return build_token_classifier(LLAMA2, TINY, tokenizer, labels, bidirectional=True)


class CountingCollator:
    """Wraps a collator to count the real (unpadded) tokens it emits."""

    def __init__(self, inner):
        self.inner = inner
        self.tokens = 0

    def __call__(self, items):
        batch = self.inner(items)
        self.tokens += int(batch["attention_mask"].sum())
        return batch


def bench_ours(data: TokenClsDataModule, model, steps: int) -> float:
    optim = OptimSpec(lambda params, lr: torch.optim.AdamW(params, lr=lr), 1e-3, 0.0, 1.0)
    module = TokenClsModule(model, optim, lambda p: {}, pad_id=0)
    trainer = L.Trainer(
        accelerator="cpu",
        precision="bf16-mixed",
        max_steps=steps,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        limit_val_batches=0,
        num_sanity_val_steps=0,
    )
    start = time.perf_counter()
    trainer.fit(module, train_dataloaders=data.train_dataloader())
    return module.train_tokens / (time.perf_counter() - start)


def bench_hf(data: TokenClsDataModule, model, tokenizer, steps: int, batch_size: int) -> float:
    items = [{"input_ids": w.input_ids, "labels": w.labels} for w in data.encoded["train"].windows]
    collator = CountingCollator(DataCollatorForTokenClassification(tokenizer))
    with tempfile.TemporaryDirectory() as out:
        args = TrainingArguments(
            output_dir=out,
            per_device_train_batch_size=batch_size,
            max_steps=steps,
            learning_rate=1e-3,
            bf16=True,
            use_cpu=True,
            report_to="none",
            save_strategy="no",
            logging_strategy="no",
            disable_tqdm=True,
            dataloader_num_workers=0,
            seed=0,
        )
        trainer = Trainer(model=model, args=args, train_dataset=items, data_collator=collator)
        start = time.perf_counter()
        trainer.train()
        seconds = time.perf_counter() - start
    return collator.tokens / seconds


def padding_efficiency(data: TokenClsDataModule, max_length: int) -> tuple[float, float]:
    """Real / padded tokens for our length-grouped batches, and for padding every batch to max_length."""
    lengths = data.encoded["train"].lengths
    real = sum(lengths)
    ours = sum(max(lengths[i] for i in batch) * len(batch) for batch in data.train_sampler().batches())
    return real / ours, real / (len(lengths) * max_length)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--max-length", type=int, default=256)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

    docs = load_docs()
    labels = bio_labels(entity_types(docs["train"]))
    tokenizer = load_or_train_tokenizer(
        LLAMA2.tokenizer_kind, TINY.vocab_size, [d.text for d in docs["train"] + docs["dev"]], cache_dir()
    )
    label2id = {label: i for i, label in enumerate(labels)}
    data = TokenClsDataModule(
        {"train": docs["train"]},
        tokenizer,
        label2id,
        Windowing("all", args.max_length, 32),
        Batching(args.batch_size, 64, seed=0),
    )
    print(
        f"{len(data.encoded['train'].windows)} training windows, batch {args.batch_size}, {args.steps} steps, "
        f"{args.threads} threads, bf16 autocast, no compile"
    )
    hf = bench_hf(data, fresh_model(tokenizer, labels), tokenizer, args.steps, args.batch_size)
    ours = bench_ours(data, fresh_model(tokenizer, labels), args.steps)
    ours_eff, max_eff = padding_efficiency(data, args.max_length)
    print(f"HF Trainer (DataCollatorForTokenClassification): {hf:,.0f} tokens/s")
    print(f"ours (Lightning, length-grouped batches):        {ours:,.0f} tokens/s")
    print(f"padding efficiency (real/padded tokens): ours {ours_eff:.3f}, pad-to-max_length {max_eff:.3f}")
    print(f"tokencls throughput ratio (ours/HF Trainer): {ours / hf:.2f}")


if __name__ == "__main__":
    main()

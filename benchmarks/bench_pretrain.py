"""Pretraining throughput: our packed blocks vs. the original's padded, 25%-overlapping windows.

Both sides train the same tiny causal Llama (same init) through the same Lightning module for the same number
of steps, batch size, block length, precision (bf16 autocast) and threads, in one process, on the same
documents (the bilingual corpus from CLINICAL_NER_CORPORA, else the synthetic one). The original cut each
document into 8000-token windows overlapping by 2000 (25%), padded; here that is scaled to the block size:
windows of `block` tokens overlapping by `block // 4`, each padded to `block` (padding masked out of loss and
attention). Prints, for each, raw tokens/s (every position computed, padding included), and unique training
tokens/s (tokens not seen before in the epoch: no padding, no re-trained overlap), then the ratio.
Usage: python benchmarks/bench_pretrain.py [--steps 30] [--batch-size 16] [--block 256] [--threads 2]
"""

from __future__ import annotations

import argparse
import os
import random
from pathlib import Path

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from clinical_ner.cache.location import cache_dir
from clinical_ner.config import compose_config
from clinical_ner.data.brat import read_split
from clinical_ner.data.synthetic import synthetic_splits
from clinical_ner.models.backbone import build_causal_lm
from clinical_ner.models.tokenizer import load_or_train_tokenizer
from clinical_ner.pretrain.corpora import mix_languages, read_language
from clinical_ner.pretrain.module import CausalLMModule
from clinical_ner.pretrain.packing import BlockDataset, pack, tokenize_documents
from clinical_ner.training.callbacks import TrainStepTimer

CFG = compose_config(["model=llama2", "scale=tiny"])  # the default tiny Llama 2 of a run
LLAMA2, TINY = CFG.model, CFG.scale


def load_texts() -> tuple[list, list[str]]:
    """Pretraining documents (bilingual sample or synthetic) and the tokenizer's training texts."""
    root = os.environ.get("CLINICAL_NER_CORPORA")
    pharmaconer = os.environ.get("PHARMACONER_DIR")
    if pharmaconer and Path(pharmaconer, "train").is_dir():
        ner = [d.text for split in ("train", "dev") for d in read_split(Path(pharmaconer) / split)]
    else:
        ner = [d.text for d in synthetic_splits()["train"]]
    if root and Path(root, "es").is_dir() and Path(root, "en").is_dir():
        docs = mix_languages(
            {lang: read_language(Path(root) / lang) for lang in ("es", "en")}, lambda d: 1, None, 0
        )
        return docs, ner
    print("CLINICAL_NER_CORPORA not set: benchmarking on the synthetic corpus")
    return synthetic_splits(n_train=400, n_dev=0, n_test=0)["train"], ner


class WindowDataset(Dataset):
    """Original-style windows, padded to the block length; `new` = tokens not in the previous window."""

    def __init__(self, docs: list[np.ndarray], block: int, overlap: int, pad_id: int, seed: int) -> None:
        self.items: list[tuple[np.ndarray, int]] = []
        step = block - overlap
        for doc in docs:
            start = 0
            while True:
                window = doc[start : start + block]
                self.items.append((window, len(window) if start == 0 else len(window) - overlap))
                if start + block >= len(doc):
                    break
                start += step
        random.Random(seed).shuffle(self.items)
        self.block, self.pad_id = block, pad_id

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        window, new = self.items[index]
        ids = torch.full((self.block,), self.pad_id, dtype=torch.long)
        ids[: len(window)] = torch.from_numpy(window.astype(np.int64))
        mask = torch.zeros(self.block, dtype=torch.long)
        mask[: len(window)] = 1
        return {"input_ids": ids, "attention_mask": mask, "new_tokens": torch.tensor(max(new, 0))}


class WindowedModule(CausalLMModule):
    """The same module with the padding masked out of attention and loss, as padded windows need."""

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        labels = batch["input_ids"].masked_fill(batch["attention_mask"] == 0, -100)
        return self.model(
            input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], labels=labels
        ).loss


class UniqueCounter(L.Callback):
    """Unique training tokens in the batches seen (all of a packed batch; the new part of each window)."""

    def __init__(self) -> None:
        self.unique = 0

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        new = batch.get("new_tokens")
        self.unique += int(new.sum()) if new is not None else int(batch["input_ids"].numel())


def bench(module: CausalLMModule, loader: DataLoader, steps: int) -> tuple[float, float]:
    """(raw positions/s, unique tokens/s) over `steps` steps, timed inside the training steps."""
    timer, counter = TrainStepTimer(), UniqueCounter()
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
        callbacks=[timer, counter],
    )
    trainer.fit(module, train_dataloaders=loader)
    raw = timer.steps * loader.batch_size * loader.dataset[0]["input_ids"].numel()
    return raw / timer.seconds, counter.unique / timer.seconds


def fresh_module(tokenizer, cls=CausalLMModule) -> CausalLMModule:
    torch.manual_seed(0)
    model = build_causal_lm(LLAMA2, TINY, tokenizer)
    return cls(model, lambda params, lr: torch.optim.AdamW(params, lr=lr, betas=(0.9, 0.95)), 1e-3, 0.05, 0.1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--block", type=int, default=256)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

    docs, ner_texts = load_texts()
    tokenizer = load_or_train_tokenizer(LLAMA2.tokenizer_kind, TINY.vocab_size, ner_texts, cache_dir())
    tokenized = tokenize_documents(docs, tokenizer).docs()
    packed = pack(tokenized, args.block)
    windows = WindowDataset(tokenized, args.block, args.block // 4, tokenizer.pad_token_id, seed=0)
    real = sum(len(w) for w, _ in windows.items)
    unique = sum(new for _, new in windows.items)
    print(
        f"{len(docs)} documents, {packed.tokens:,} tokens in {len(packed.blocks)} packed blocks; "
        f"{len(windows)} windows of {args.block} (overlap {args.block // 4}): {real / (len(windows) * args.block):.3f} "
        f"real/padded, {unique / real:.3f} unique/real; batch {args.batch_size}, {args.steps} steps, "
        f"{args.threads} threads, bf16 autocast"
    )
    generator = torch.Generator().manual_seed(0)
    packed_loader = DataLoader(
        BlockDataset(packed.blocks), batch_size=args.batch_size, shuffle=True, generator=generator
    )
    window_loader = DataLoader(windows, batch_size=args.batch_size)
    window_raw, window_unique = bench(fresh_module(tokenizer, WindowedModule), window_loader, args.steps)
    packed_raw, packed_unique = bench(fresh_module(tokenizer), packed_loader, args.steps)
    print(
        f"windowed (padded, 25% overlap): {window_raw:,.0f} raw tokens/s, {window_unique:,.0f} unique tokens/s"
    )
    print(
        f"packed (ours):                  {packed_raw:,.0f} raw tokens/s, {packed_unique:,.0f} unique tokens/s"
    )
    print(f"pretrain raw throughput ratio (packed/windowed): {packed_raw / window_raw:.2f}")
    print(f"pretrain unique-token throughput ratio (packed/windowed): {packed_unique / window_unique:.2f}")


if __name__ == "__main__":
    main()

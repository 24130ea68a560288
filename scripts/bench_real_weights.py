"""Training throughput of a real pretrained checkpoint (SmolLM2-135M) on this CPU: the paper path vs. the
`scale=small` path and the variants tried on the way, in one process on the same PharmaCoNER windows.

Each variant runs the real model (packaged weights, clinical_ner/models/packaged_weights.py), the project's
datamodule (length-grouped batches of real training windows) and a full optimizer step; tokens/s counts real
(unpadded) tokens after warm-up steps. The baseline is the paper recipe as it ran before (LoRA r 12, bf16-true,
micro-batch 8): 207 tokens/s measured by the issue, re-measured here.
Usage: python scripts/bench_real_weights.py [--steps 12] [--threads 2] [--variants paper,small,...]
"""

from __future__ import annotations

import argparse
import os
import time
from contextlib import nullcontext
from pathlib import Path

import torch

from clinical_ner.approaches.tokencls.datamodule import TokenClsDataModule, Windowing
from clinical_ner.approaches.tokencls.tagging import bio_labels
from clinical_ner.config import compose_config
from clinical_ner.data.batching import Batching
from clinical_ner.data.brat import read_split
from clinical_ner.models.backbone import TOKEN_CLS_HEAD, apply_lora, build_token_classifier
from clinical_ner.models.factory import make_tokenizer
from clinical_ner.paths import cache_dir

# name: (finetune, precision, micro-batch, compile)
VARIANTS = {
    "paper": ("lora", "bf16-true", 8, False),  # the paper recipe on this CPU (the 207 tokens/s)
    "lora-mixed": ("lora", "bf16-mixed", 8, False),
    "full-true": ("full", "bf16-true", 8, False),
    "full-fp32": ("full", "32-true", 8, False),
    "full-mixed": ("full", "bf16-mixed", 8, False),
    "full-mixed-b32": ("full", "bf16-mixed", 32, False),
    "small": ("full", "bf16-mixed", 16, False),  # scale=small's recipe (conf/recipe/tokencls_small.yaml)
    "small-compile": ("full", "bf16-mixed", 16, True),
}


def windows(cfg, tokenizer, labels, batch_size: int) -> TokenClsDataModule:
    root = Path(os.environ["PHARMACONER_DIR"])
    splits = {"train": read_split(root / "train"), "dev": [], "test": []}
    label2id = {label: i for i, label in enumerate(labels)}
    a = cfg.approach
    windowing = Windowing(a.label_position, a.max_length, a.stride)  # every window, whatever the recipe keeps
    return TokenClsDataModule(splits, tokenizer, label2id, windowing, Batching(batch_size, batch_size, 0))


def run_variant(cfg, tokenizer, labels, name: str, steps: int, warmup: int) -> dict:
    finetune, precision, batch_size, compile_ = VARIANTS[name]
    torch.manual_seed(0)
    model = build_token_classifier(cfg.model, cfg.scale, tokenizer, labels, bidirectional=True)
    if finetune == "lora":
        model = apply_lora(model, cfg.approach.lora, "TOKEN_CLS", modules_to_save=[TOKEN_CLS_HEAD])
    if precision == "bf16-true":
        model = model.to(torch.bfloat16)
    step_model = torch.compile(model) if compile_ else model
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-5)
    data = windows(cfg, tokenizer, labels, batch_size)
    data.setup("fit")
    batches = iter(data.train_dataloader())
    autocast = torch.autocast("cpu", dtype=torch.bfloat16) if precision == "bf16-mixed" else nullcontext()
    tokens, started = 0, time.perf_counter()
    for step in range(warmup + steps):
        if step == warmup:
            tokens, started = 0, time.perf_counter()
        batch = next(batches)
        with autocast:
            loss = step_model(**batch).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        tokens += int(batch["attention_mask"].sum())
    seconds = time.perf_counter() - started
    return {"variant": name, "tokens_per_s": tokens / seconds, "loss": float(loss)}


def matmul_peak(threads: int, seconds: float = 3.0) -> float:
    """This machine's bf16 matmul TFLOP/s right now, at the model's MLP shape (what MFU divides by)."""
    a, b = torch.randn(1024, 576, dtype=torch.bfloat16), torch.randn(576, 1536, dtype=torch.bfloat16)
    for _ in range(3):
        a @ b
    count, started = 0, time.perf_counter()
    while time.perf_counter() - started < seconds:
        a @ b
        count += 1
    return 2 * 1024 * 576 * 1536 * count / (time.perf_counter() - started) / 1e12


def flops_per_token(model_cfg, finetune: str) -> float:
    """Training FLOPs per token of the body's matmuls: 6N in full fine-tuning; ~4N with frozen weights (LoRA:
    input gradients still flow through every layer, no weight gradients)."""
    a = model_cfg.arch
    head_dim = a.hidden_size // a.num_heads
    attn = a.hidden_size * head_dim * (2 * a.num_heads + 2 * a.num_kv_heads)
    body = a.num_layers * (attn + 3 * a.hidden_size * a.intermediate_size)
    return (6 if finetune == "full" else 4) * body


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--variants", default="paper,lora-mixed,full-true,full-fp32,full-mixed,small")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    cfg = compose_config(["model=smollm2", "scale=small", "approach=tokencls"])
    root = Path(os.environ["PHARMACONER_DIR"])
    texts = [doc.text for doc in read_split(root / "train")]
    tokenizer = make_tokenizer(cfg.model, cfg.scale, texts, cache_dir(cfg.cache_dir))
    labels = bio_labels(sorted({span.type for doc in read_split(root / "dev") for span in doc.spans}))
    rows = []
    for name in args.variants.split(","):
        rows.append(run_variant(cfg, tokenizer, labels, name, args.steps, args.warmup))
        print(f"{name}: {rows[-1]['tokens_per_s']:.0f} tokens/s", flush=True)
    base = rows[0]["tokens_per_s"]
    peak = matmul_peak(args.threads)
    print(f"bf16 matmul peak of this machine now ({args.threads} threads): {peak:.3f} TFLOP/s")
    print(f"| variant | finetune | precision | micro-batch | tokens/s | vs {rows[0]['variant']} | MFU |")
    print("| --- | --- | --- | ---: | ---: | ---: | ---: |")
    for row in rows:
        finetune, precision, batch_size, compile_ = VARIANTS[row["variant"]]
        label = row["variant"] + (" (compiled)" if compile_ else "")
        mfu = row["tokens_per_s"] * flops_per_token(cfg.model, finetune) / (peak * 1e12)
        print(
            f"| {label} | {finetune} | {precision} | {batch_size} | {row['tokens_per_s']:.0f} "
            f"| {row['tokens_per_s'] / base:.2f}x | {mfu:.2f} |"
        )
    best = max(rows, key=lambda r: r["tokens_per_s"])
    print(
        f"real-weights training ratio ({best['variant']}/{rows[0]['variant']}): {best['tokens_per_s'] / base:.2f}"
    )


if __name__ == "__main__":
    main()

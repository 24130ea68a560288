"""Real weights against this CPU's own limits, in one process: the bf16 GEMM rate at the model's matmul shapes
(1 and 2 threads), the memory bandwidth, training tokens/s of the `scale=small` recipe before and after (the
same real PharmaCoNER windows, variants interleaved round by round so a busy neighbour slows both alike), and
seq2seq generation (the same test sentences, free decoding) before and after, each printed as a fraction of
its limit and as a ratio to the baseline.

Training variants (token classification, SmolLM2-135M, full fine-tuning):
  before: the small recipe as it was (bf16 autocast over fp32 weights; AdamW's default CPU loop over 272 tensors)
  auto-only: `precision: auto` alone (the faster of bf16 autocast and fp32 here)
  after:  the small recipe now (`precision: auto` and fused AdamW)
Generation variants (SmolLM2-135M-Instruct, batch 32, continuous batching, free greedy decoding):
  before: fp32 weights under bf16 autocast;  after: `precision: auto` (fp32 without autocast where bf16 is the
  slower path)

Usage: python scripts/bench_real_weights.py [--steps 4] [--rounds 3] [--prompts 32] [--threads 2]
       python scripts/bench_real_weights.py --small   (a random tiny Llama and random windows: seconds; tests)
On a host without bf16 kernels (torch capability AVX2) the bf16 baseline runs a scalar fallback at ~1 token/s:
there use e.g. --steps 1 --rounds 1 --batch-size 4 --prompts 4 --max-new-tokens 12 (README's run: ~10 min).
"""

from __future__ import annotations

import argparse
import os
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from transformers import LlamaConfig, LlamaForCausalLM, LlamaForTokenClassification

from clinical_ner.approaches.seq2seq.decoding import generate
from clinical_ner.data.batching import Batching, PadCollator
from clinical_ner.models.precision import autocast_for
from clinical_ner.planning.probe import (
    bandwidth_gbs,
    gemm_rate,
    model_shapes,
    probe_gemm,
    train_flops_per_token,
)

# name: (precision, what torch.optim.AdamW gets beside the recipe's betas and weight decay); "auto" is what
# planning/auto_precision.py picks on this machine (bf16-mixed where bf16 matmuls are faster, else 32-true)
TRAIN_VARIANTS = {
    "before": ("bf16-mixed", {}),
    "auto-only": ("auto", {}),  # what the precision alone gives
    "after": ("auto", {"fused": True}),
}
# name: precision of generation (fp32 weights; bf16 autocast under bf16-mixed)
GEN_VARIANTS = {"before": "bf16-mixed", "after": "auto"}


@dataclass
class Workload:
    """What the benchmark runs: a token classifier, a causal LM, training batches and prompts."""

    classifier: torch.nn.Module
    lm: torch.nn.Module
    batches: list[dict]
    prompts: list[list[int]]
    pad_id: int
    stop_ids: list[int]


def tiny_workload(batches: int, batch_size: int, prompts: int, seed: int = 0) -> Workload:
    """A random 2-layer Llama and random windows/prompts: exercises every code path in seconds."""
    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=256,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        pad_token_id=0,
        num_labels=5,
    )
    generator = torch.Generator().manual_seed(seed)
    items = [
        {"input_ids": torch.randint(3, 256, (n,), generator=generator).tolist(), "index": i}
        for i, n in enumerate(torch.randint(8, 40, (batches * batch_size,), generator=generator).tolist())
    ]
    for item in items:
        item["labels"] = [i % 5 for i in item["input_ids"]]
    collate = PadCollator(0)
    windows = [collate(items[i : i + batch_size]) for i in range(0, len(items), batch_size)]
    ask = [torch.randint(3, 256, (n,), generator=generator).tolist() for n in range(10, 10 + prompts)]
    return Workload(LlamaForTokenClassification(config), LlamaForCausalLM(config), windows, ask, 0, [2])


def real_workload(batches: int, batch_size: int, prompts: int) -> Workload:
    """SmolLM2-135M (packaged or hub weights) on PharmaCoNER: the small recipe's training windows (its datamodule,
    length-grouped batches) and the seq2seq small recipe's test prompts (sentences, longest first dropped)."""
    from clinical_ner.approaches.seq2seq.datamodule import prompt_split
    from clinical_ner.approaches.seq2seq.prompt import make_renderer
    from clinical_ner.approaches.tokencls.datamodule import TokenClsDataModule, Windowing
    from clinical_ner.approaches.tokencls.tagging import bio_labels
    from clinical_ner.cache.location import cache_dir
    from clinical_ner.config import compose_config
    from clinical_ner.data.brat import read_split
    from clinical_ner.models.backbone import build_causal_lm, build_token_classifier
    from clinical_ner.models.factory import make_tokenizer

    root = Path(os.environ["PHARMACONER_DIR"])
    splits = {name: read_split(root / name) for name in ("train", "dev", "test")}
    types = sorted({span.type for doc in splits["dev"] for span in doc.spans})
    cfg = compose_config(["model=smollm2", "scale=small", "approach=tokencls"])
    texts = [doc.text for doc in splits["train"]]
    tokenizer = make_tokenizer(cfg.model, cfg.scale, texts, cache_dir(cfg.cache_dir))
    labels = bio_labels(types)
    a = cfg.approach
    data = TokenClsDataModule(
        {"train": splits["train"]},
        tokenizer,
        {label: i for i, label in enumerate(labels)},
        Windowing.from_config(a),
        Batching(batch_size, batch_size, cfg.seed),
    )
    loader = iter(data.train_dataloader())
    windows = [next(loader) for _ in range(batches)]
    torch.manual_seed(0)
    classifier = build_token_classifier(cfg.model, cfg.scale, tokenizer, labels, bidirectional=True)
    s2s = compose_config(["model=smollm2", "scale=small", "approach=seq2seq"])
    instruct = make_tokenizer(s2s.model, s2s.scale, texts, cache_dir(s2s.cache_dir), True)
    renderer = make_renderer(s2s.approach.prompt, instruct, types, True)
    split = prompt_split(splits["test"], renderer, str(s2s.approach.unit))
    lm = build_causal_lm(s2s.model, s2s.scale, instruct, instruct=True).eval()
    return Workload(
        classifier, lm, windows, split.prompts[:prompts], instruct.pad_token_id, renderer.stop_ids
    )


def train_variants(classifier: torch.nn.Module, auto: str) -> dict[str, tuple]:
    """(model, optimizer, precision) per training variant, every variant starting from the same weights."""
    import copy

    made = {}
    for name, (precision, extra) in TRAIN_VARIANTS.items():
        model = copy.deepcopy(classifier).train()
        optimizer = torch.optim.AdamW(
            model.parameters(), lr=1e-5, betas=(0.9, 0.98), weight_decay=0.01, **extra
        )
        made[name] = (model, optimizer, auto if precision == "auto" else precision)
    return made


def train_step(
    model: torch.nn.Module, optimizer: torch.optim.Optimizer, batch: dict, precision: str
) -> float:
    """One optimizer step of the small recipe (forward under `precision`'s autocast, backward, AdamW)."""
    with autocast_for(precision, torch.device("cpu")):
        loss = model(
            input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], labels=batch["labels"]
        ).loss
    loss.backward()
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return float(loss.detach())


def bench_training(work: Workload, steps: int, rounds: int, auto: str) -> dict[str, dict]:
    """Tokens/s per variant: a warm-up round, then `rounds` rounds in which every variant runs the same `steps`
    batches in turn (so a slow minute of the machine hits both)."""
    made = train_variants(work.classifier, auto)
    seconds = dict.fromkeys(made, 0.0)
    tokens = 0
    for round_ in range(rounds + 1):
        batches = [work.batches[(round_ * steps + i) % len(work.batches)] for i in range(steps)]
        for name, (model, optimizer, precision) in made.items():
            started = time.perf_counter()
            for batch in batches:
                train_step(model, optimizer, batch, precision)
            if round_:
                seconds[name] += time.perf_counter() - started
        if round_:
            tokens += sum(int(b["attention_mask"].sum()) for b in batches)
    return {
        name: {"tokens_per_s": tokens / seconds[name], "tokens": tokens, "precision": made[name][2]}
        for name in made
    }


def bench_generation(
    work: Workload, max_new_tokens: int, batch_size: int, rounds: int, auto: str
) -> dict[str, dict]:
    """Prompts/s and new tokens/s per generation variant (interleaved rounds, after one warm-up round), and
    whether every variant gave the baseline's answers."""
    results = {name: {"seconds": 0.0, "answers": None} for name in GEN_VARIANTS}
    for round_ in range(rounds + 1):
        for name, precision in GEN_VARIANTS.items():
            started = time.perf_counter()
            answers = generate(
                work.lm,
                work.prompts,
                work.pad_id,
                work.stop_ids,
                max_new_tokens,
                batch_size,
                auto if precision == "auto" else precision,
            )
            if round_:
                results[name]["seconds"] += time.perf_counter() - started
            results[name]["answers"] = answers
    base = results["before"]["answers"]
    for result in results.values():
        result["docs_per_s"] = rounds * len(work.prompts) / result["seconds"]
        result["new_tokens_per_s"] = rounds * sum(map(len, result["answers"])) / result["seconds"]
        result["same_answers"] = sum(a == b for a, b in zip(result["answers"], base, strict=True))
    return results


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small", action="store_true", help="random tiny model and data (seconds)")
    parser.add_argument("--steps", type=int, default=4, help="training steps per variant per round")
    parser.add_argument("--rounds", type=int, default=3, help="timed rounds (after one warm-up round)")
    parser.add_argument("--batch-size", type=int, default=16, help="windows per step (the small recipe's 16)")
    parser.add_argument(
        "--prompts", type=int, default=32, help="test prompts generated per variant per round"
    )
    parser.add_argument("--max-new-tokens", type=int, default=48)
    parser.add_argument("--gen-rounds", type=int, default=1)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--probe-seconds", type=float, default=2.0, help="per dtype and thread count")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    batches = args.steps * (args.rounds + 1)
    if args.small:
        work = tiny_workload(batches, args.batch_size, args.prompts)
    else:
        work = real_workload(batches, args.batch_size, args.prompts)
    c = work.classifier.config
    dims = (c.hidden_size, c.intermediate_size, c.num_attention_heads, c.num_key_value_heads)
    rows = 256 if args.small else 1024
    shapes = model_shapes(*dims, rows)
    print(f"CPU capability (torch): {torch.backends.cpu.get_cpu_capability()}; {args.threads} threads")
    gemm = {}
    for dtype in (torch.bfloat16, torch.float32):
        for count in sorted({1, args.threads}):
            gemm[dtype, count] = gemm_rate(shapes, args.probe_seconds, count, dtype)
            rates = ", ".join(f"{name} {rate:.3g}" for name, rate in gemm[dtype, count].items())
            print(f"GEMM {str(dtype)[6:]} {count} thread(s), {rows} rows, TFLOP/s: {rates}")
    bandwidth = bandwidth_gbs(16 if args.small else 256, args.probe_seconds / 2)
    print(f"memory bandwidth (copy, {args.threads} threads): {bandwidth:.1f} GB/s")
    auto = probe_gemm(*dims, seconds=1.0).precision
    print(f"precision=auto picks {auto} here")

    def limit(precision: str) -> float:
        return gemm[torch.bfloat16 if "16" in precision else torch.float32, args.threads]["mean"]

    training = bench_training(work, args.steps, args.rounds, auto)
    flops = train_flops_per_token(*dims, c.num_hidden_layers, full=True)
    base = training["before"]["tokens_per_s"]
    print(
        f"training (token classification, {training['before']['tokens']} tokens per variant, same windows):"
    )
    for name, row in training.items():
        row["gemm_fraction"] = row["tokens_per_s"] * flops / (limit(row["precision"]) * 1e12)
        print(
            f"  {name} ({row['precision']}, AdamW {TRAIN_VARIANTS[name][1] or 'default'}): "
            f"{row['tokens_per_s']:.1f} tokens/s = {row['gemm_fraction']:.1%} of its GEMM rate; "
            f"{row['tokens_per_s'] / base:.2f}x before"
        )
    generation = bench_generation(work, args.max_new_tokens, 32, args.gen_rounds, auto)
    # a decode step reads every weight once: steps/s <= bandwidth / weight bytes; new tokens/s <= that x rows
    rows_decoding = min(32, len(work.prompts))
    print(
        f"generation ({len(work.prompts)} test prompts, free greedy, batch 32, <= {args.max_new_tokens} new tokens):"
    )
    for name, row in generation.items():
        precision = auto if GEN_VARIANTS[name] == "auto" else GEN_VARIANTS[name]
        # bf16 autocast reads each weight once per step in bf16 (its casts are cached within a generate call)
        weight_bytes = (2 if "16" in precision else 4) * sum(p.numel() for p in work.lm.parameters())
        bound = bandwidth * 1e9 / weight_bytes * rows_decoding
        print(
            f"  {name} ({precision}): "
            f"{row['docs_per_s']:.2f} prompts/s, {row['new_tokens_per_s']:.1f} new tokens/s = "
            f"{row['new_tokens_per_s'] / bound:.1%} of the bandwidth bound ({bound:.0f}); "
            f"{row['docs_per_s'] / generation['before']['docs_per_s']:.2f}x before; "
            f"same answers {row['same_answers']}/{len(work.prompts)}"
        )
    return {"bandwidth_gbs": bandwidth, "auto": auto, "training": training, "generation": generation}


if __name__ == "__main__":
    main()

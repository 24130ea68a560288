"""Real weights against this CPU's own limits, in one process: the bf16 GEMM rate at the model's matmul shapes
(1 and 2 threads), the memory bandwidth, training tokens/s of the `scale=small` recipe before and after (the
same real PharmaCoNER windows, variants interleaved round by round so a busy neighbour slows both alike), and
seq2seq generation (the same test sentences, free decoding) before and after, each printed as a fraction of
its limit and as a ratio to the baseline.

Training variants (token classification, SmolLM2-135M, full fine-tuning):
  before: the small recipe as it was (bf16 autocast over fp32 weights; AdamW's default CPU loop over 272 tensors)
  auto-only: `precision: auto` alone (the faster of bf16 autocast and fp32 here)
  after:  the small recipe now (`precision: auto` and fused AdamW)
Seq2seq training variants (SmolLM2-135M-Instruct, the seq2seq small recipe's examples, `precision: auto`,
fused AdamW; the same losses up to float rounding, printed):
  full-head: the model's own `labels=` loss (LM head and cross-entropy over every position)
  answer-head: approaches/seq2seq/module.answer_loss (the LM head on the labelled positions only)
  shared-prefix: answer-head, and the prompt prefix all rows of a batch share (ChatML template + instruction)
    through the decoder once per batch (`approach.share_prefix`; its GEMM share counts the tokens really run)
All report the padding share of an epoch's batches and the optimizer step's share of the step time.
Generation variants (SmolLM2-135M-Instruct, batch 32, continuous batching, free greedy decoding):
  before: fp32 weights under bf16 autocast;  after: `precision: auto` (fp32 without autocast where bf16 is the
  slower path);  shared-prefix: after, with the prompts' shared prefix prefilled once per call (its answers are
  compared with after's too: the same precision, so any difference is float rounding)

Usage: python benchmarks/bench_real_weights.py [--steps 4] [--rounds 3] [--prompts 32] [--threads 2]
       [--parts tokencls,seq2seq,generation] [--sequential]  (one variant in memory at a time: ~7 GB peak)
       [--variants after,full-head,answer-head]  (training variants to run: all by default)
       [--gen-variants after,shared-prefix]  (generation variants: all by default)
       python benchmarks/bench_real_weights.py --small   (a random tiny Llama and random windows: seconds; tests)
On a host without bf16 kernels (torch capability AVX2) the bf16 baseline runs a scalar fallback at ~1 token/s:
there use e.g. --steps 1 --rounds 1 --batch-size 4 --prompts 4 --max-new-tokens 12 (README's run: ~10 min).
"""

from __future__ import annotations

import argparse
import copy
import gc
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch
from transformers import LlamaConfig, LlamaForCausalLM, LlamaForTokenClassification

from clinical_ner.approaches.seq2seq.decoding import generate
from clinical_ner.approaches.seq2seq.module import answer_loss, shareable_prefix
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
# name: (precision of generation (fp32 weights; bf16 autocast under bf16-mixed), prefill the shared prefix once)
GEN_VARIANTS = {"before": ("bf16-mixed", False), "after": ("auto", False), "shared-prefix": ("auto", True)}
PARTS = ("tokencls", "seq2seq", "generation")


def full_head_loss(model: torch.nn.Module, batch: dict) -> torch.Tensor:
    """The model's own `labels=` loss: logits and cross-entropy at every position (a causal LM: the labels mask
    the prompt; a token classifier: its loss over the labelled sub-tokens)."""
    return model(
        input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], labels=batch["labels"]
    ).loss


def shared_prefix_loss(model: torch.nn.Module, batch: dict) -> torch.Tensor:
    """answer_loss with the batch's shared prompt prefix run once (what `approach.share_prefix` trains with)."""
    return answer_loss(model, batch, shareable_prefix(model, batch))


# name: the seq2seq training loss (all under `precision: auto` with fused AdamW, as in the small recipe)
S2S_VARIANTS = {"full-head": full_head_loss, "answer-head": answer_loss, "shared-prefix": shared_prefix_loss}


@dataclass
class Workload:
    """What the benchmark runs: a token classifier, a causal LM, training batches and prompts."""

    classifier: torch.nn.Module | None
    lm: torch.nn.Module | None
    batches: list[dict]
    prompts: list[list[int]]
    pad_id: int
    stop_ids: list[int]
    s2s_batches: list[dict] = field(default_factory=list)  # seq2seq training batches (prompt labels -100)
    padding: dict[str, float] = field(default_factory=dict)  # padding share of one epoch's batches


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
    instruction = torch.randint(3, 256, (6,), generator=generator).tolist()  # what every prompt starts with
    ask = [
        instruction + torch.randint(3, 256, (n,), generator=generator).tolist() for n in range(4, 4 + prompts)
    ]
    examples = []
    for item in items:  # instruction + prompt + answer: the loss on the last third only
        ids = instruction + item["input_ids"]
        cut = 2 * len(ids) // 3
        examples.append({**item, "input_ids": ids, "labels": [-100] * cut + ids[cut:]})
    s2s = [collate(examples[i : i + batch_size]) for i in range(0, len(examples), batch_size)]
    padding = {"tokencls": padding_share(windows), "seq2seq": padding_share(s2s)}
    classifier = LlamaForTokenClassification(config)
    return Workload(classifier, LlamaForCausalLM(config), windows, ask, 0, [2], s2s, padding)


def padding_share(batches: list[dict]) -> float:
    """The share of batch positions that are padding (attention mask 0)."""
    real = sum(int(b["attention_mask"].sum()) for b in batches)
    return 1 - real / sum(b["attention_mask"].numel() for b in batches)


def real_workload(
    batches: int, batch_size: int, prompts: int, s2s_batch_size: int, parts: tuple = PARTS
) -> Workload:
    """SmolLM2-135M (packaged or hub weights) on PharmaCoNER: the small recipe's training windows (its datamodule,
    length-grouped batches), the seq2seq small recipe's training examples (its stage's datamodule) and its test
    prompts (sentences, longest first dropped). Only the models that `parts` train or run are loaded."""
    from clinical_ner.approaches.seq2seq.stage import Seq2seqStage
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
    epoch = list(data.train_dataloader())  # cheap (no model): the padding share over a whole epoch
    windows = epoch[:batches]
    torch.manual_seed(0)
    classifier = None
    if "tokencls" in parts:
        classifier = build_token_classifier(cfg.model, cfg.scale, tokenizer, labels, bidirectional=True)
    s2s = compose_config(["model=smollm2", "scale=small", "approach=seq2seq"])
    s2s.data.batch_size = s2s_batch_size
    instruct = make_tokenizer(s2s.model, s2s.scale, texts, cache_dir(s2s.cache_dir), True)
    stage = Seq2seqStage(s2s, instruct, types, splits)
    s2s_epoch = list(stage.build_datamodule().train_dataloader())
    lm = None
    if {"seq2seq", "generation"} & set(parts):
        lm = build_causal_lm(s2s.model, s2s.scale, instruct, instruct=True).eval()
    return Workload(
        classifier,
        lm,
        windows,
        stage.prompts["test"].prompts[:prompts],
        instruct.pad_token_id,
        stage.renderer.stop_ids,
        s2s_epoch[:batches],
        {"tokencls": padding_share(epoch), "seq2seq": padding_share(s2s_epoch)},
    )


Step = Callable[[dict], tuple[float, float]]  # one optimizer step on a batch -> (loss, optimizer seconds)


def make_step(
    model: torch.nn.Module,
    precision: str,
    loss: Callable[[torch.nn.Module, dict], torch.Tensor],
    **adamw: object,
) -> Step:
    """One optimizer step of a small recipe on `model` (trained in place): the forward and `loss` under
    `precision`'s autocast, backward, AdamW (the recipes' betas and weight decay; `adamw`: e.g. fused)."""
    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-5, betas=(0.9, 0.98), weight_decay=0.01, **adamw)

    def step(batch: dict) -> tuple[float, float]:
        with autocast_for(precision, torch.device("cpu")):
            value = loss(model, batch)
        value.backward()
        started = time.perf_counter()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        return float(value.detach()), time.perf_counter() - started

    return step


def run_variants(
    builders: dict[str, Callable[[], Step]],
    batches: list[dict],
    steps: int,
    rounds: int,
    sequential: bool = False,
) -> tuple[dict[str, dict], list[dict]]:
    """Seconds, optimizer seconds and losses per variant, and the timed batches: a warm-up round, then `rounds`
    rounds of the same `steps` batches per variant. Interleaved round by round (a slow minute of the machine
    hits every variant) unless `sequential` (one variant's model and optimizer state in memory at a time)."""
    plan = [
        [batches[(round_ * steps + i) % len(batches)] for i in range(steps)] for round_ in range(rounds + 1)
    ]
    results = {name: {"seconds": 0.0, "optimizer_seconds": 0.0, "losses": []} for name in builders}

    def run(name: str, step: Step, round_: int) -> None:
        started = time.perf_counter()
        for batch in plan[round_]:
            loss, optimizer_seconds = step(batch)
            if round_:
                results[name]["optimizer_seconds"] += optimizer_seconds
            results[name]["losses"].append(loss)
        if round_:
            results[name]["seconds"] += time.perf_counter() - started

    if sequential:
        for name, build in builders.items():
            step = build()
            for round_ in range(rounds + 1):
                run(name, step, round_)
            del step
            gc.collect()  # free this variant's model copy and AdamW state before the next one
    else:
        made = {name: build() for name, build in builders.items()}
        for round_ in range(rounds + 1):
            for name, step in made.items():
                run(name, step, round_)
    for row in results.values():
        row["optimizer_share"] = row["optimizer_seconds"] / row["seconds"]
    return results, [batch for timed in plan[1:] for batch in timed]


def bench_training(
    work: Workload,
    steps: int,
    rounds: int,
    auto: str,
    sequential: bool = False,
    only: tuple = tuple(TRAIN_VARIANTS),
) -> dict[str, dict]:
    """Token-classification tokens/s per variant (TRAIN_VARIANTS, those in `only`), all from the same weights."""
    builders = {
        name: lambda p=precision, e=extra: make_step(
            copy.deepcopy(work.classifier), auto if p == "auto" else p, full_head_loss, **e
        )
        for name, (precision, extra) in TRAIN_VARIANTS.items()
        if name in only
    }
    results, timed = run_variants(builders, work.batches, steps, rounds, sequential)
    tokens = sum(int(b["attention_mask"].sum()) for b in timed)
    for name, row in results.items():
        precision = TRAIN_VARIANTS[name][0]
        row.update(
            tokens_per_s=tokens / row["seconds"],
            tokens=tokens,
            precision=auto if precision == "auto" else precision,
        )
    return results


def bench_seq2seq_training(
    work: Workload,
    steps: int,
    rounds: int,
    auto: str,
    sequential: bool = False,
    only: tuple = tuple(S2S_VARIANTS),
) -> dict[str, dict]:
    """Seq2seq training tokens/s per loss (S2S_VARIANTS) on the same examples, from the same weights; each row
    also says how far its losses are from the first variant's (the same up to float rounding)."""
    builders = {
        name: lambda f=loss: make_step(copy.deepcopy(work.lm), auto, f, fused=True)
        for name, loss in S2S_VARIANTS.items()
        if name in only
    }
    results, timed = run_variants(builders, work.s2s_batches, steps, rounds, sequential)
    tokens = sum(int(b["attention_mask"].sum()) for b in timed)
    labelled = sum(int((b["labels"][:, 1:] != -100).sum()) for b in timed)
    # tokens a shared prefix keeps out of the decoder: (rows - 1) x its length, per batch
    shared = sum((len(b["input_ids"]) - 1) * shareable_prefix(work.lm, b) for b in timed)
    first = next(iter(results.values()))["losses"]
    for name, row in results.items():
        row.update(tokens_per_s=tokens / row["seconds"], tokens=tokens, labelled=labelled, precision=auto)
        row["decoder_share"] = 1 - shared / tokens if name == "shared-prefix" else 1.0
        row["loss_difference"] = max(abs(a - b) for a, b in zip(row["losses"], first, strict=True))
    return results


def bench_generation(
    work: Workload,
    max_new_tokens: int,
    batch_size: int,
    rounds: int,
    auto: str,
    only: tuple = tuple(GEN_VARIANTS),
) -> dict[str, dict]:
    """Prompts/s and new tokens/s per generation variant (those in `only`; interleaved rounds, after one warm-up
    round), and how many answers equal the first variant's and, for shared-prefix, after's."""
    variants = {name: value for name, value in GEN_VARIANTS.items() if name in only}
    results = {name: {"seconds": 0.0, "answers": None} for name in variants}
    for round_ in range(rounds + 1):
        for name, (precision, share) in variants.items():
            started = time.perf_counter()
            answers = generate(
                work.lm,
                work.prompts,
                work.pad_id,
                work.stop_ids,
                max_new_tokens,
                batch_size,
                auto if precision == "auto" else precision,
                share_prefix=share,
            )
            if round_:
                results[name]["seconds"] += time.perf_counter() - started
            results[name]["answers"] = answers

    def same(answers: list, other: list) -> int:
        return sum(a == b for a, b in zip(answers, other, strict=True))

    base = next(iter(results.values()))["answers"]
    for name, result in results.items():
        result["docs_per_s"] = rounds * len(work.prompts) / result["seconds"]
        result["new_tokens_per_s"] = rounds * sum(map(len, result["answers"])) / result["seconds"]
        result["same_answers"] = same(result["answers"], base)
        if name == "shared-prefix" and "after" in results and base is not results["after"]["answers"]:
            result["same_as_after"] = same(result["answers"], results["after"]["answers"])
    return results


def train_lines(
    title: str, rows: dict[str, dict], flops: float, limit: Callable[[str], float], padding: float
) -> None:
    """Print a training table: tokens/s, the share of the GEMM rate (`flops` per real token), the ratio to the
    first row, the optimizer step's share of the time; the padding share of an epoch's batches above it."""
    first = next(iter(rows.values()))["tokens_per_s"]
    print(f"{title}; padding {padding:.1%} of an epoch's batch positions:")
    for name, row in rows.items():
        # FLOPs the decoder really ran: a shared prefix runs once per batch (`decoder_share` of the tokens)
        done = row["tokens_per_s"] * row.get("decoder_share", 1.0)
        row["gemm_fraction"] = done * flops / (limit(row["precision"]) * 1e12)
        agree = f"; loss differs by {row['loss_difference']:.1e}" if "loss_difference" in row else ""
        print(
            f"  {name} ({row['precision']}): {row['tokens_per_s']:.1f} tokens/s = "
            f"{row['gemm_fraction']:.1%} of its GEMM rate; {row['tokens_per_s'] / first:.2f}x {next(iter(rows))}; "
            f"optimizer step {row['optimizer_share']:.1%} of the time{agree}"
        )


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small", action="store_true", help="random tiny model and data (seconds)")
    parser.add_argument("--steps", type=int, default=4, help="training steps per variant per round")
    parser.add_argument("--rounds", type=int, default=3, help="timed rounds (after one warm-up round)")
    parser.add_argument("--batch-size", type=int, default=16, help="windows per step (the small recipe's 16)")
    parser.add_argument(
        "--s2s-batch-size", type=int, default=8, help="seq2seq examples per step (the small recipe's 8)"
    )
    parser.add_argument(
        "--prompts", type=int, default=32, help="test prompts generated per variant per round"
    )
    parser.add_argument("--max-new-tokens", type=int, default=48)
    parser.add_argument("--gen-rounds", type=int, default=1)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument(
        "--gen-variants", default=",".join(GEN_VARIANTS), help="generation variants (e.g. leave out before)"
    )
    parser.add_argument("--probe-seconds", type=float, default=2.0, help="per dtype and thread count")
    parser.add_argument(
        "--parts", default=",".join(PARTS), help="comma-separated subset of " + ",".join(PARTS)
    )
    parser.add_argument(
        "--sequential", action="store_true", help="one training variant in memory at a time (not interleaved)"
    )
    parser.add_argument(
        "--variants",
        default=",".join([*TRAIN_VARIANTS, *S2S_VARIANTS]),
        help="training variants to run (e.g. leave out `before` where bf16 is a scalar fallback)",
    )
    args = parser.parse_args(argv)
    parts, variants = args.parts.split(","), tuple(args.variants.split(","))
    if not set(parts) <= set(PARTS):
        parser.error(f"--parts: choose from {','.join(PARTS)}")
    if not set(args.gen_variants.split(",")) <= set(GEN_VARIANTS):
        parser.error(f"--gen-variants: choose from {','.join(GEN_VARIANTS)}")
    if not set(variants) <= {*TRAIN_VARIANTS, *S2S_VARIANTS}:
        parser.error(f"--variants: choose from {','.join([*TRAIN_VARIANTS, *S2S_VARIANTS])}")
    torch.set_num_threads(args.threads)
    batches = args.steps * (args.rounds + 1)
    if args.small:
        work = tiny_workload(batches, args.batch_size, args.prompts)
    else:
        work = real_workload(batches, args.batch_size, args.prompts, args.s2s_batch_size, tuple(parts))
    c = (work.classifier or work.lm).config  # the same architecture
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

    flops = train_flops_per_token(*dims, c.num_hidden_layers, full=True)
    out = {"bandwidth_gbs": bandwidth, "auto": auto, "padding": work.padding}
    if "tokencls" in parts and set(variants) & set(TRAIN_VARIANTS):
        training = bench_training(work, args.steps, args.rounds, auto, args.sequential, variants)
        out["training"] = training
        tokens = next(iter(training.values()))["tokens"]
        title = f"training (token classification, {tokens} tokens per variant, same windows)"
        train_lines(title, training, flops, limit, work.padding["tokencls"])
    work.classifier = None  # its memory, before the causal LM trains
    gc.collect()
    if "seq2seq" in parts and set(variants) & set(S2S_VARIANTS):
        s2s = bench_seq2seq_training(work, args.steps, args.rounds, auto, args.sequential, variants)
        out["seq2seq_training"] = s2s
        row = next(iter(s2s.values()))
        # useful FLOPs per real token: the decoder layers at every token, the LM head (trained: tied embedding)
        # only at the labelled ones (the answer share of all tokens)
        head = 6 * c.hidden_size * work.lm.config.vocab_size * row["labelled"] / row["tokens"]
        title = (
            f"training (seq2seq, {row['tokens']} tokens per variant, {row['labelled'] / row['tokens']:.0%} "
            "of them labelled, same examples)"
        )
        train_lines(title, s2s, flops + head, limit, work.padding["seq2seq"])
    if "generation" in parts:
        out["generation"] = generation_lines(work, args, auto, bandwidth)
    return out


def generation_lines(work: Workload, args: argparse.Namespace, auto: str, bandwidth: float) -> dict:
    """Run the generation variants and print each one's rate against the memory-bandwidth bound."""
    only = tuple(args.gen_variants.split(","))
    generation = bench_generation(work, args.max_new_tokens, 32, args.gen_rounds, auto, only)
    # a decode step reads every weight once: steps/s <= bandwidth / weight bytes; new tokens/s <= that x rows
    rows_decoding = min(32, len(work.prompts))
    first = next(iter(generation))
    print(
        f"generation ({len(work.prompts)} test prompts, free greedy, batch 32, <= {args.max_new_tokens} new tokens):"
    )
    for name, row in generation.items():
        precision = auto if GEN_VARIANTS[name][0] == "auto" else GEN_VARIANTS[name][0]
        # bf16 autocast reads each weight once per step in bf16 (its casts are cached within a generate call)
        weight_bytes = (2 if "16" in precision else 4) * sum(p.numel() for p in work.lm.parameters())
        bound = bandwidth * 1e9 / weight_bytes * rows_decoding
        print(
            f"  {name} ({precision}): "
            f"{row['docs_per_s']:.2f} prompts/s, {row['new_tokens_per_s']:.1f} new tokens/s = "
            f"{row['new_tokens_per_s'] / bound:.1%} of the bandwidth bound ({bound:.0f}); "
            f"{row['docs_per_s'] / generation[first]['docs_per_s']:.2f}x {first}; "
            f"same answers as {first} {row['same_answers']}/{len(work.prompts)}"
            + (f", as after {row['same_as_after']}/{len(work.prompts)}" if "same_as_after" in row else "")
        )
    return generation


if __name__ == "__main__":
    main()

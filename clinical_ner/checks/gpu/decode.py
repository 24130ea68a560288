"""Our seq2seq decoder on a GPU at a family's REAL size (random bf16 weights, no download): new tokens/s of our
continuous-batching loop (free and schema-constrained) against `model.generate` on static batches of the same
prompts, and against transformers' continuous-batching `generate_batch`, for sentence and document units of the
corpus's test split (prompts rendered by the run's own renderer and a tokenizer of the family's kind trained here).

    python -m clinical_ner.checks.gpu.decode --family llama3_1 --out docs/gpu_decode.md      # one GPU, ~2 min
    python -m clinical_ner.checks.gpu.decode --small                                         # CPU smoke run

Random weights never write a stop token, so every free answer runs to `--max-new-tokens` and all free decoders make
the same number of tokens; the constrained decoder writes what the schema allows (it may close early). The
bandwidth bound: at batch B every step reads the bf16 weights once plus the KV cache of its rows, so new tokens/s
<= B x bandwidth / (weight bytes + B x mean context x KV bytes per token), at the datasheet's 4.8 TB/s.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch
from transformers import GenerationConfig

from clinical_ner.approaches.seq2seq.datamodule import prompt_split
from clinical_ner.approaches.seq2seq.decoding import SchemaConstraint, TokenVocab, generate
from clinical_ner.approaches.seq2seq.prompt import make_renderer
from clinical_ner.checks.gpu.device import FAMILIES, device_for, report_head, sync, write_report
from clinical_ner.config import compose_config
from clinical_ner.data.batching import PadCollator
from clinical_ner.data.ner_corpus import corpus_types, load_ner_splits
from clinical_ner.models.tokenizer import load_or_train_tokenizer
from clinical_ner.planning import setup_for
from clinical_ner.planning.measure import build_model

BANDWIDTH = 4.8e12  # H200 HBM3e, datasheet bytes/s
ENTITY_BIAS = 100.0  # random weights would close the array at once: make them write entities to the budget
SMALL = ["model.arch.hidden_size=128", "model.arch.intermediate_size=256", "model.arch.num_layers=2"]
SMALL += ["model.arch.num_heads=4", "model.arch.num_kv_heads=1", "model.arch.vocab_size=1024"]


def timed(device: torch.device, fn):
    sync(device)
    start = time.perf_counter()
    out = fn()
    sync(device)
    return out, time.perf_counter() - start


@torch.inference_mode()
def static_generate(model, prompts, pad: int, stops: list[int], budget: int, batch: int) -> list[list[int]]:
    """`model.generate` (greedy, KV cache) on static, left-padded batches of `batch` prompts, longest first."""
    config = GenerationConfig(
        max_new_tokens=budget, do_sample=False, eos_token_id=stops, pad_token_id=pad, use_cache=True
    )
    order = sorted(range(len(prompts)), key=lambda i: -len(prompts[i]))
    collate, device = PadCollator(pad, side="left"), next(model.parameters()).device
    answers: list[list[int]] = [[] for _ in prompts]
    for first in range(0, len(order), batch):
        rows = order[first : first + batch]
        padded = collate([{"input_ids": prompts[i], "index": i} for i in rows])
        ids, mask = padded["input_ids"].to(device), padded["attention_mask"].to(device)
        out = model.generate(input_ids=ids, attention_mask=mask, generation_config=config)[:, ids.shape[1] :]
        for row, tokens in zip(rows, out.tolist(), strict=True):
            answers[row] = next((tokens[:k] for k, t in enumerate(tokens) if t in stops or t == pad), tokens)
    return answers


def batch_generate(model, prompts, pad: int, stops: list[int], budget: int, batch: int) -> list[list[int]]:
    """transformers' continuous batching (`generate_batch`), at most `batch` requests decoding together."""
    from transformers import ContinuousBatchingConfig

    config = GenerationConfig(max_new_tokens=budget, do_sample=False, eos_token_id=stops, pad_token_id=pad)
    outputs = model.generate_batch(
        inputs=[list(p) for p in prompts],
        generation_config=config,
        continuous_batching_config=ContinuousBatchingConfig(max_requests_per_batch=batch),
        progress_bar=False,
    )
    answers = [outputs[f"req_{i}"].generated_tokens for i in range(len(prompts))]
    return [next((a[:k] for k, t in enumerate(a) if t in stops), a) for a in answers]


def bound(model_bytes: int, kv_per_token: int, batch: int, context: float) -> float:
    """New tokens/s the memory bandwidth allows at `batch` rows of mean `context` tokens."""
    return batch * BANDWIDTH / (model_bytes + batch * context * kv_per_token)


def main(argv: list[str] | None = None) -> int:
    """Each unit: the four decoders on the same prompts; one Markdown table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--family", default="llama3_1", choices=FAMILIES)
    parser.add_argument("--batch-size", type=int, default=16, help="rows decoding together (eval batch)")
    parser.add_argument("--sentences", type=int, default=48, help="sentence prompts")
    parser.add_argument("--documents", type=int, default=16, help="document prompts")
    parser.add_argument("--max-new-tokens", type=int, default=160)
    parser.add_argument("--data-root", help="PharmaCoNER folder; default: the synthetic corpus")
    parser.add_argument("--small", action="store_true", help="CPU: a 2-layer 128-wide model")
    parser.add_argument("--no-batch-api", action="store_true", help="skip transformers' generate_batch")
    parser.add_argument("--cache", default="/tmp/gpu_decode-cache")
    parser.add_argument("--out", type=Path)
    argv = sys.argv[1:] if argv is None else argv
    args = parser.parse_args(argv)
    found = device_for(args.small)
    if found is None:
        return 2
    device, device_name = found
    if args.small:
        torch.set_num_threads(1)
        args.sentences, args.documents, args.max_new_tokens, args.batch_size = 6, 3, 120, 4
    data = [f"data.root={args.data_root}"] if args.data_root else ["data=synthetic"]
    over = [f"model={args.family}", "approach=seq2seq", "approach.finetune=full", "scale=paper", *data]
    cfg = compose_config(over + (SMALL if args.small else []))
    splits = load_ner_splits(cfg.data, Path(args.cache))
    types = corpus_types(cfg.data, splits)
    texts = [d.text for d in splits["train"] + splits["dev"]]
    vocab = 600 if args.small else 8000
    tokenizer = load_or_train_tokenizer(cfg.model.tokenizer_kind, vocab, texts, Path(args.cache))
    renderer = make_renderer(cfg.approach.prompt, tokenizer, types, instruct=False)
    setup = setup_for(cfg, cuda=device.type == "cuda")
    torch.manual_seed(0)
    model = build_model(cfg, setup, device).eval()
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    pad, stops, budget, b = tokenizer.pad_token_id, renderer.stop_ids, args.max_new_tokens, args.batch_size
    a = setup.arch
    weight_bytes = sum(p.numel() * p.element_size() for p in model.parameters())
    kv_per_token = a.layers * 2 * a.kv_heads * a.head_dim * 2
    precision = "bf16-true" if device.type == "cuda" else "32"
    token_vocab = TokenVocab(tokenizer)
    lines = report_head("Seq2seq decoding at real size", device_name, "clinical_ner.checks.gpu.decode", argv)
    lines += [
        f"{args.family} (random weights, {weight_bytes / 2**30:.1f} GiB), batch {b}, {budget} new tokens at most.",
        "",
        "| unit | prompts | mean prompt | decoder | new tokens | s | new tokens/s | x generate | of bound |"
        " same as generate |",
        "| --- | ---: | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    print("\n".join(lines), flush=True)
    for unit, count in (("sentence", args.sentences), ("document", args.documents)):
        split = prompt_split(splits["test"], renderer, unit)
        prompts, unit_texts = split.prompts[:count], [u.text for u in split.units[:count]]
        mean_prompt = sum(map(len, prompts)) / len(prompts)
        limit = bound(weight_bytes, kv_per_token, min(b, len(prompts)), mean_prompt + budget / 2)

        def constrained(prompts=prompts, unit_texts=unit_texts):
            constraint = SchemaConstraint(
                token_vocab, unit_texts, types, stops, budget, ENTITY_BIAS, whole_words=True
            )
            return generate(model, prompts, pad, stops, budget, b, precision, constraint)

        decoders = {
            "generate (static batches)": lambda p=prompts: static_generate(model, p, pad, stops, budget, b),
            "ours, free": lambda p=prompts: generate(model, p, pad, stops, budget, b, precision),
            "ours, constrained": constrained,
        }
        if not args.no_batch_api:  # last: it may switch the model's attention implementation
            decoders["generate_batch (free)"] = lambda p=prompts: batch_generate(
                model, p, pad, stops, budget, b
            )
        generate(model, prompts[:2], pad, stops, 4, 2, precision)  # warm-up (kernels, allocator)
        reference, base_rate = None, None
        for name, fn in decoders.items():
            try:
                answers, seconds = timed(device, fn)
            except Exception as error:  # report and go on: one decoder failing must not hide the others
                row = f"| {unit} | {len(prompts)} | {mean_prompt:.0f} | {name} | failed: {type(error).__name__}:"
                print(row + f" {str(error)[:100]} | | | | | |", flush=True)
                lines.append(row + " | | | | | |")
                continue
            made = sum(map(len, answers))
            rate = made / seconds
            if reference is None:
                reference, base_rate = answers, rate
            same = sum(x == y for x, y in zip(answers, reference, strict=True))
            same_text = "-" if name.endswith("constrained") else f"{same}/{len(prompts)}"
            row = (
                f"| {unit} | {len(prompts)} | {mean_prompt:.0f} | {name} | {made} | {seconds:.2f} | {rate:,.0f} "
                f"| {rate / base_rate:.2f} | {rate / limit:.2f} | {same_text} |"
            )
            lines.append(row)
            print(row, flush=True)
    write_report(args.out, "\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

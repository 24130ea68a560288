"""Seq2seq generation throughput: our batched greedy decoding vs `model.generate` called one prompt at a time
(the original's way, with its KV cache), and the cost of schema-constrained decoding.

The default tiny model of `approach=seq2seq` (conf defaults, seeded), briefly trained (`--train-steps`) so that
it writes JSON-like answers of realistic, varying lengths, answers the same sentence prompts from PharmaCoNER
test (synthetic corpus when PHARMACONER_DIR is unset). Checks that batched and sequential answers are identical,
then prints the two ratios. Our loop at batch 1 is timed too, so the gain of batching alone is visible.
`--model RUN/model` benchmarks a trained run's saved model instead (one that writes real entities). The token
budget defaults to the tiny recipe's: constrained decoding closes the array once the budget left could not finish
an entity, so a budget of 64 would make it answer `[]` at once and measure nothing.
Usage: python benchmarks/bench_seq2seq.py [--prompts 128] [--batch-size 16] [--max-new-tokens 192] [--threads N]
    [--model RUN/model] [--entity-bias 0]

`--formats` compares the answer formats instead (approach.format json / inline / words): for each, a fresh tiny
model (same seed) is briefly trained on that format's answers, then answers the same prompts free, constrained
step by step, constrained with jump-forward and with jump-forward + copy drafts; it prints new tokens per unit,
forward passes and documents/s.

`--formats --passes-only` stops after the model-free counts (gold answers followed through the constraint by a
perfect model: tokens, forward passes and tokens fed per unit), e.g. with `model=smollm2 scale=small` for the
real tokenizer.

`--drafts --model RUN/model` measures copy drafts on a trained run of a copy format (inline, words): its test
prompts decoded constrained step by step, with jump-forward, and with jump-forward + copy drafts of each
`--draft-sizes`, one after the other in one process; it checks that every variant writes the same answers and
prints forward passes, docs/s and the ratio to jump-forward; `--baseline OTHER/model` then times another run
(e.g. the JSON run of the same recipe) on the same test units, decoding as that run predicts.

`--bias-sweep 0,1,2 --model RUN/model` chooses constrained decoding's `entity_bias` on dev: the run's first
`--prompts` dev units decoded at each bias (a malus on closing a JSON list, a bonus on opening an inline marker
or a `B-` label), with P/R/F1 over the documents answered.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import torch
from hydra import compose, initialize_config_dir
from transformers import AutoModelForCausalLM, AutoTokenizer, GenerationConfig

import clinical_ner.config  # noqa: F401  (registers the schema)
from clinical_ner.approaches.seq2seq.datamodule import PromptSplit, prompt_split, training_examples
from clinical_ner.approaches.seq2seq.decoding import SchemaConstraint, TokenVocab, generate
from clinical_ner.approaches.seq2seq.formats import FORMATS, answer_format
from clinical_ner.approaches.seq2seq.inference import Seq2SeqDecoder, Seq2seqInference, evaluate_answers
from clinical_ner.approaches.seq2seq.prompt import make_renderer
from clinical_ner.approaches.seq2seq.stage import DRAFT_TOKENS
from clinical_ner.approaches.seq2seq.units import make_units
from clinical_ner.cache.location import cache_dir
from clinical_ner.data.batching import PadCollator
from clinical_ner.data.ner_corpus import corpus_types, load_ner_splits
from clinical_ner.models.backbone import build_causal_lm
from clinical_ner.models.factory import make_tokenizer
from clinical_ner.models.weights import instruct_weights
from clinical_ner.training.inference_settings import read_inference_settings

CONF = str(Path(__file__).resolve().parent.parent / "conf")


def timed(fn):
    start = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - start


def hf_sequential(model, prompts, pad: int, stops: list[int], budget: int) -> list[list[int]]:
    """The baseline: `model.generate` (greedy, KV cache) on one prompt at a time, no padding."""
    config = GenerationConfig(
        max_new_tokens=budget, do_sample=False, use_cache=True, eos_token_id=stops, pad_token_id=pad
    )
    answers = []
    with torch.inference_mode():
        for prompt in prompts:
            out = model.generate(torch.tensor([prompt]), generation_config=config)[0, len(prompt) :].tolist()
            answers.append(next((out[:i] for i, t in enumerate(out) if t in stops), out))
    return answers


def quick_train(model, renderer, docs, unit: str, steps: int, batch_size: int = 16, answer=None) -> None:
    """A few AdamW steps on training examples: a random model never writes JSON, so its answers say nothing
    about the lengths or the constraint costs of real answers."""
    examples, _ = training_examples(docs, renderer, unit, max_length=384, answer=answer)
    collate = PadCollator(renderer.tokenizer.pad_token_id)
    optimizer = torch.optim.AdamW(model.parameters(), lr=2e-3)
    generator = torch.Generator().manual_seed(0)
    model.train()
    for _ in range(steps):
        picks = torch.randint(len(examples), (batch_size,), generator=generator).tolist()
        batch = collate([{**examples[i], "index": i} for i in picks])
        loss = model(**{k: batch[k] for k in ("input_ids", "attention_mask", "labels")}).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()


def _measure(
    model, decoder, split, indices: list[int], types: list[str]
) -> tuple[float, int, float, dict, list]:
    """(new tokens per unit, forward passes, seconds, scores (P/R/F1...), answers) of one decoder answering
    `indices` of `split`."""
    calls: list[int] = []
    hook = model.register_forward_hook(lambda *_: calls.append(1))
    decoder.answer_split(model, split, indices[:2])  # warm-up (and the trie)
    decoder.generated_tokens, calls[:] = 0, []
    answers, seconds = timed(lambda: decoder.answer_split(model, split, indices))
    hook.remove()
    answered = {split.units[i].doc_id for i in indices}  # scored on these documents (the last may be cut)
    units = PromptSplit([d for d in split.docs if d.id in answered], [split.units[i] for i in indices], [])
    scores = evaluate_answers(units, dict(enumerate(answers)), types, decoder.answer)[0]
    return decoder.generated_tokens / len(indices), len(calls), seconds, scores, answers


def gold_following(
    answer, vocab: TokenVocab, units, types: list[str], jump: bool, drafts: int = 0
) -> tuple[float, float, float]:
    """(tokens, forward passes, tokens fed) per unit of constrained decoding driven towards the gold answer by a perfect
    model, model-free: at each step it writes the next token of the rest of the gold answer as the tokenizer
    writes it (what training taught), or, where the constraint does not allow that token, the longest allowed
    one that continues it. With `drafts`, each pass also checks a copy draft against that model
    (`SchemaConstraint.accept`); tokens fed counts its rejected tokens too (what the passes compute)."""
    tokens = passes = fed = 0
    stop = vocab.tokenizer.eos_token_id
    size = len(vocab.pieces)

    def choice(gold: bytes, written: bytes, allowed: set[int] | None = None) -> int | None:
        rest = gold[len(written) :]
        if not rest or not gold.startswith(written):
            return None
        natural = vocab.encode(rest)[:1]
        if natural and (allowed is None or natural[0] in allowed):
            return natural[0]
        fits = [t for t in allowed or () if vocab.pieces[t] and rest.startswith(vocab.pieces[t])]
        return max(fits, key=lambda t: len(vocab.pieces[t])) if fits else None

    for unit, spans in units:
        gold = answer.target(unit, spans).encode("utf-8")
        budget = answer.constrained_budget(192, unit.text, types) if answer.copies_input else 192
        constraint = SchemaConstraint(
            vocab, [unit.text], types, [stop], budget, answer=answer, whole_words=True,
            jump_forward=jump, draft_tokens=drafts,
        )  # fmt: skip
        written, count = b"", 0
        while True:
            allowed = constraint.restrict([0], [count], torch.zeros(1, size))[0] > float("-inf")
            passes += 1
            token = choice(gold, written, set(allowed.nonzero().flatten().tolist()))
            if token is None:
                break  # the stop token (or, for JSON, an offset the gold answer writes differently)
            constraint.advance([0], [token])
            run = constraint.jump(0, token, budget - count)
            draft = constraint.draft(0, budget - count - len(run)) if drafts else []
            fed += len(run) + len(draft)
            if draft:
                scores = torch.zeros(len(draft) + 1, size)
                for j in range(len(draft) + 1):
                    best = choice(
                        gold, written + b"".join(vocab.pieces[t] or b"" for t in [*run, *draft[:j]])
                    )
                    if best is not None:
                        scores[j, best] = 1.0
                run += draft[: constraint.accept(0, draft, scores, count + len(run))]
            if run[-1] == stop:  # a draft's guessed stop token, kept: the answer is complete
                count += len(run) - 1
                break
            written += b"".join(vocab.pieces[t] for t in run)
            count += len(run)
        tokens += count
    return tokens / len(units), passes / len(units), fed / len(units)


def compare_formats(cfg, splits, types, tokenizer, instruct: bool, args) -> None:
    """New tokens, forward passes and documents/s per answer format and decoding (see the module docstring)."""
    unit = str(cfg.approach.unit)
    vocab = TokenVocab(tokenizer)
    units = [(u, d.spans) for d in splits["test"] for u in make_units(d, unit, d.spans)][: args.prompts * 10]
    print(
        f"gold answers of {len(units)} test units: tokens (tokenizer) / decoded towards gold (tokens, passes)"
    )
    for name, answer in FORMATS.items():
        written = sum(
            len(tokenizer(answer.target(u, s), add_special_tokens=False)["input_ids"]) for u, s in units
        )
        cells = [f"{name}: {written / len(units):.1f} tokens"]
        for jump, drafts in (
            [(False, 0), (True, 0), (True, DRAFT_TOKENS)] if answer.copies_input else [(False, 0)]
        ):
            tokens, passes, fed = gold_following(answer, vocab, units, types, jump, drafts)
            label = ("jump-forward" if jump else "step by step") + (f" + drafts {drafts}" if drafts else "")
            cells.append(f"{label} {tokens:.1f} tokens in {passes:.1f} passes ({fed:.1f} fed)")
        print("; ".join(cells))
    if args.passes_only:
        return
    print("| format | decoding | new tokens / unit | forward passes | units/s | docs/s | F1 |")
    print("| --- | --- | ---: | ---: | ---: | ---: | ---: |")
    for name in FORMATS:
        answer = answer_format(name)
        renderer = make_renderer(cfg.approach.prompt, tokenizer, types, instruct, name)
        split = prompt_split(splits["test"], renderer, unit)
        indices = list(range(min(args.prompts, len(split.units))))
        torch.manual_seed(cfg.seed)
        model = build_causal_lm(cfg.model, cfg.scale, tokenizer, instruct=instruct)
        quick_train(model, renderer, splits["train"], unit, args.train_steps, answer=answer)
        model.eval()
        docs = len({split.units[i].doc_id for i in indices})
        runs = [("free", False, 0), ("constrained", False, 0)]
        if answer.copies_input:
            runs += [("constrained", True, 0), ("constrained", True, DRAFT_TOKENS)]
        for decoding, jump, drafts in runs:
            decoder = Seq2SeqDecoder(
                tokenizer, renderer.stop_ids, types, decoding, args.max_new_tokens, args.batch_size,
                whole_words=True, earliest=True, answer=answer, jump_forward=jump, draft_tokens=drafts,
            )  # fmt: skip
            tokens, passes, seconds, scores, _ = _measure(model, decoder, split, indices, types)
            f1 = scores["f1"]
            label = decoding + (" + jump-forward" if jump else "") + (f" + drafts {drafts}" if drafts else "")
            print(
                f"| {name} | {label} | {tokens:.1f} | {passes} | {len(indices) / seconds:.2f} "
                f"| {docs / seconds:.3f} | {f1:.3f} |"
            )


def load_run(folder: Path, splits, prompts: int, split_name: str = "test") -> tuple:
    """(settings, tokenizer, model, renderer, prompt split, its first `prompts` unit indices) of a saved run."""
    settings = read_inference_settings(folder, Seq2seqInference)
    tokenizer = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForCausalLM.from_pretrained(folder, trust_remote_code=False, use_safetensors=True).eval()
    renderer = settings.prompt.renderer(tokenizer)
    split = prompt_split(splits[split_name], renderer, str(settings.unit))
    return settings, tokenizer, model, renderer, split, list(range(min(prompts, len(split.units))))


def run_decoder(settings, tokenizer, renderer, batch_size: int, **changes) -> Seq2SeqDecoder:
    """The decoder a saved run predicts with (`changes` override its fields, e.g. `draft_tokens=0`)."""
    fields = dict(
        decoding=str(settings.decoding), max_new_tokens=settings.max_new_tokens, batch_size=batch_size,
        precision=settings.precision, entity_bias=settings.entity_bias, whole_words=settings.whole_words,
        earliest=settings.earliest, answer=answer_format(settings.format), jump_forward=settings.jump_forward,
        share_prefix=settings.share_prefix, draft_tokens=settings.draft_tokens,
    )  # fmt: skip
    return Seq2SeqDecoder(tokenizer, renderer.stop_ids, list(settings.types), **{**fields, **changes})


def compare_drafts(folder: Path, splits, args) -> None:
    """Copy drafts on a trained copy-format run: the same answers in fewer forward passes (module docstring)."""
    settings, tokenizer, model, renderer, split, indices = load_run(folder, splits, args.prompts)
    answer = answer_format(settings.format)
    if not answer.copies_input:
        raise SystemExit(f"--drafts: {folder} answers in {settings.format}, which has no copy to draft")
    docs = len({split.units[i].doc_id for i in indices})
    print(
        f"model: {folder} (format {settings.format}); {len(indices)} test units of {docs} documents, batch "
        f"{args.batch_size}, {torch.get_num_threads()} threads"
    )
    variants = [("step by step", False, 0), ("jump-forward", True, 0)]
    variants += [(f"jump-forward + drafts {n}", True, n) for n in map(int, args.draft_sizes.split(","))]
    print("| decoding | new tokens / unit | forward passes | docs/s | vs jump-forward | same answers | F1 |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    first, jumped = None, None
    for label, jump, drafts in variants:
        decoder = run_decoder(
            settings, tokenizer, renderer, args.batch_size, decoding="constrained", jump_forward=jump,
            draft_tokens=drafts,
        )  # fmt: skip
        tokens, passes, seconds, scores, answers = _measure(
            model, decoder, split, indices, list(settings.types)
        )
        f1 = scores["f1"]
        first = first or answers
        jumped = jumped or (seconds if jump else None)
        ratio = f"{jumped / seconds:.2f}x" if jumped else "-"
        same = sum(a == b for a, b in zip(answers, first, strict=True))
        print(
            f"| {label} | {tokens:.1f} | {passes} | {docs / seconds:.3f} | {ratio} | {same}/{len(indices)} "
            f"| {f1:.3f} |"
        )
    if args.baseline is not None:  # another run (e.g. JSON) on the same test units, decoding as it predicts
        settings, tokenizer, model, renderer, split, indices = load_run(args.baseline, splits, args.prompts)
        decoder = run_decoder(settings, tokenizer, renderer, args.batch_size)
        tokens, passes, seconds, scores, _ = _measure(model, decoder, split, indices, list(settings.types))
        f1 = scores["f1"]
        print(
            f"| {args.baseline} ({settings.format}, {settings.decoding}, as it predicts) | {tokens:.1f} | {passes} "
            f"| {docs / seconds:.3f} | {jumped / seconds:.2f}x | - | {f1:.3f} |"
        )


def compare_bias(folder: Path, splits, args) -> None:
    """`entity_bias` on a trained run, chosen on dev: its first `--prompts` dev units decoded constrained (as the
    run predicts otherwise: jump-forward, drafts) at each bias of `--bias-sweep`; P/R/F1 over the documents
    answered, new tokens per unit and docs/s."""
    settings, tokenizer, model, renderer, split, indices = load_run(folder, splits, args.prompts, "dev")
    docs = len({split.units[i].doc_id for i in indices})
    print(
        f"model: {folder} (format {settings.format}); {len(indices)} dev units of {docs} documents, batch "
        f"{args.batch_size}, {torch.get_num_threads()} threads"
    )
    print("| entity_bias | precision | recall | F1 | new tokens / unit | docs/s |")
    print("| ---: | ---: | ---: | ---: | ---: | ---: |")
    for bias in map(float, args.bias_sweep.split(",")):
        decoder = run_decoder(
            settings, tokenizer, renderer, args.batch_size, decoding="constrained", entity_bias=bias
        )
        tokens, _, seconds, scores, _ = _measure(model, decoder, split, indices, list(settings.types))
        print(
            f"| {bias:g} | {scores['precision']:.3f} | {scores['recall']:.3f} | {scores['f1']:.3f} | "
            f"{tokens:.1f} | {docs / seconds:.3f} |"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prompts", type=int, default=128)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--max-new-tokens", type=int, default=192)
    parser.add_argument(
        "--threads", type=int, default=None, help="torch threads (default: every core, as runs use)"
    )
    parser.add_argument("--train-steps", type=int, default=40)
    parser.add_argument("--model", type=Path, default=None, help="a trained run's model folder (RUN/model)")
    parser.add_argument("--entity-bias", type=float, default=0.0, help="constrained decoding's entity bias")
    parser.add_argument(
        "--formats", action="store_true", help="compare the answer formats (module docstring)"
    )
    parser.add_argument(
        "--passes-only", action="store_true", help="with --formats: the model-free gold-answer counts only"
    )
    parser.add_argument("--drafts", action="store_true", help="with --model: copy drafts (module docstring)")
    parser.add_argument("--draft-sizes", default="8,32", help="with --drafts: draft lengths to time")
    parser.add_argument(
        "--baseline",
        type=Path,
        default=None,
        help="with --drafts: another run (RUN/model) timed on the same units",
    )
    parser.add_argument(
        "--bias-sweep", default=None, help="with --model: entity_bias values to compare on dev, e.g. 0,1,2"
    )
    parser.add_argument("overrides", nargs="*", help="Hydra overrides, e.g. model=llama3_1")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    data = (
        ["data.root=" + os.environ["PHARMACONER_DIR"]]
        if os.environ.get("PHARMACONER_DIR")
        else ["data=synthetic"]
    )
    with initialize_config_dir(config_dir=CONF, version_base="1.3"):
        cfg = compose("train", overrides=["approach=seq2seq", "output_dir=/tmp", *data, *args.overrides])
    cache = cache_dir(cfg.cache_dir)
    splits = load_ner_splits(cfg.data, cache)
    types = corpus_types(cfg.data, splits)
    instruct = instruct_weights(cfg.scale, cfg.corpus.name)  # the training run's rule (Seq2seqStage.instruct)
    if args.bias_sweep is not None:
        if args.model is None:
            parser.error("--bias-sweep needs --model RUN/model")
        compare_bias(args.model, splits, args)
        return
    if args.drafts:
        if args.model is None:
            parser.error("--drafts needs --model RUN/model (a trained inline or words run)")
        compare_drafts(args.model, splits, args)
        return
    if args.model is not None:
        tokenizer = AutoTokenizer.from_pretrained(args.model)
        renderer = read_inference_settings(args.model, Seq2seqInference).prompt.renderer(tokenizer)
    else:
        texts = [d.text for d in splits["train"] + splits["dev"]]
        tokenizer = make_tokenizer(cfg.model, cfg.scale, texts, cache, instruct=instruct)
        if args.formats:
            compare_formats(cfg, splits, types, tokenizer, instruct, args)
            return
        renderer = make_renderer(cfg.approach.prompt, tokenizer, types, instruct)
    split = prompt_split(splits["test"], renderer, str(cfg.approach.unit))
    prompts, texts = split.prompts[: args.prompts], [u.text for u in split.units[: args.prompts]]
    if args.model is not None:
        model = AutoModelForCausalLM.from_pretrained(args.model)
        print(f"model: {args.model}")
    else:
        torch.manual_seed(cfg.seed)
        model = build_causal_lm(cfg.model, cfg.scale, tokenizer, instruct=instruct)
        _, t_train = timed(
            lambda: quick_train(model, renderer, splits["train"], str(cfg.approach.unit), args.train_steps)
        )
        print(f"trained {args.train_steps} steps in {t_train:.1f}s")
    model.eval()
    pad, stops, budget = tokenizer.pad_token_id, renderer.stop_ids, args.max_new_tokens
    print(
        f"model={args.model or cfg.model.family} scale={cfg.scale.name} hidden={cfg.scale.hidden_size} "
        f"layers={cfg.scale.num_layers} prompts={len(prompts)} batch={args.batch_size} max_new_tokens={budget} "
        f"threads={torch.get_num_threads()}"
    )

    generate(model, prompts[:2], pad, stops, 4, 2)  # warm-up
    hf_sequential(model, prompts[:2], pad, stops, 4)
    batched, t_batched = timed(lambda: generate(model, prompts, pad, stops, budget, args.batch_size))
    ours_one, t_one = timed(lambda: generate(model, prompts, pad, stops, budget, 1))
    sequential, t_seq = timed(lambda: hf_sequential(model, prompts, pad, stops, budget))
    same = sum(a == b for a, b in zip(batched, sequential, strict=True))
    same_one = sum(a == b for a, b in zip(ours_one, sequential, strict=True))
    tokens = sum(len(a) for a in batched)
    for name, seconds in (("batched", t_batched), ("ours, batch 1", t_one), ("generate x1", t_seq)):
        print(f"{name:>14}: {len(prompts) / seconds:8.2f} prompts/s  ({tokens / seconds:8.1f} new tokens/s)")
    print(f"identical answers: batched {same}/{len(prompts)}, ours batch 1 {same_one}/{len(prompts)}")
    print(f"batching alone (ours batch {args.batch_size} / ours batch 1): {t_one / t_batched:.2f}")
    print(f"seq2seq generation ratio (batched/sequential): {t_seq / t_batched:.2f}")

    vocab, build = timed(lambda: TokenVocab(tokenizer))
    constraint = SchemaConstraint(vocab, texts, types, stops, budget, args.entity_bias, whole_words=True)
    constrained, t_con = timed(
        lambda: generate(model, prompts, pad, stops, budget, args.batch_size, "32", constraint)
    )
    con_tokens = sum(len(a) for a in constrained)
    print(
        f"constrained: {len(prompts) / t_con:8.2f} prompts/s  ({con_tokens / t_con:8.1f} new tokens/s), trie {build:.2f}s"
    )
    print(
        f"constrained/free docs/s: {t_batched / t_con:.2f} (per new token: "
        f"{(con_tokens / t_con) / (tokens / t_batched):.2f}; cost {100 * (t_con / t_batched - 1):+.0f}% time)"
    )


if __name__ == "__main__":
    main()

"""How many gold mentions survive spans -> BIO tags -> spans, per tokenizer kind and label position.

Trains (or loads from cache) each kind's tokenizer on PharmaCoNER train+dev text, encodes the chosen split with
windows, feeds the gold labels back as predictions, and classifies every mention that does not come back
exactly. Usage: clinical-ner roundtrip [--data DIR] [--split test] [--vocab 8000]
(= python -m clinical_ner.analysis.roundtrip)
"""

from __future__ import annotations

import argparse
import collections
import os
import time
from pathlib import Path

import torch

from clinical_ner.approaches.tokencls.tagging import (
    IGNORE,
    WORD_RE,
    Unit,
    Window,
    bio_labels,
    decode_document,
    encode_document,
    label_units,
)
from clinical_ner.data.brat import read_split
from clinical_ner.data.types import Document, Span
from clinical_ner.errors import cli
from clinical_ner.models.tokenizer import LLAMA3_SPLIT, _train_byte_level_bpe, load_or_train_tokenizer

POSITIONS = ("all", "first", "last")


def document_units(windows: list[Window], text: str, position: str) -> list[Unit]:
    """The labelled units of a document, rebuilt per sentence from the windows' owned offsets."""
    units: list[Unit] = []
    by_sentence: dict[int, list[tuple[int, int]]] = collections.defaultdict(list)
    for window in sorted(windows, key=lambda w: (w.sentence, w.token_start)):
        by_sentence[window.sentence] += window.offsets[window.score_from : window.score_to]
    for offsets in by_sentence.values():
        units += label_units(offsets, text, position)
    return units


def classify(gold: Span, doc: Document, decoded: list[Span], units: list[Unit], word_bounds: set[int]) -> str:
    """Why one gold mention did not survive the round trip."""
    for boundary in (gold.start, gold.end):
        if any(u.start < boundary < u.end for u in units):
            if boundary not in word_bounds:
                return "boundary inside a word"
            return "sub-token/unit crosses entity boundary"
    for span in decoded:
        if span.start <= gold.start and gold.end <= span.end and span != gold:
            others = [g for g in doc.spans if g != gold and span.start < g.end and g.start < span.end]
            return "merged with adjacent mention" if others else "decoded span too wide"
    return "other"


def measure(tokenizer, docs: list[Document], label2id: dict[str, int], position: str, args) -> dict:
    id2label = {i: label for label, i in label2id.items()}
    outside = label2id["O"]
    counts: collections.Counter = collections.Counter()
    examples: dict[str, list[str]] = collections.defaultdict(list)
    started = time.perf_counter()
    for doc in docs:
        windows = encode_document(tokenizer, doc, label2id, position, args.max_length, args.stride)
        counts["windows"] += len(windows)
        counts["multi-window sentences"] += sum(1 for w in windows if w.token_start > 0)
        predictions = [[outside if label == IGNORE else label for label in w.labels] for w in windows]
        decoded = decode_document(windows, predictions, id2label, position, "begin", doc.text)
        lost = sorted(set(doc.spans) - set(decoded))
        counts["gold"] += len(doc.spans)
        counts["spurious"] += len(set(decoded) - set(doc.spans))
        if not lost:
            continue
        units = document_units(windows, doc.text, position)
        bounds = {b for m in WORD_RE.finditer(doc.text) for b in (m.start(), m.end())}
        for gold in lost:
            reason = classify(gold, doc, decoded, units, bounds)
            counts[reason] += 1
            context = doc.text[max(0, gold.start - 12) : gold.end + 12].replace("\n", " ")
            examples[reason].append(f"{doc.surface(gold)!r} in {context!r}")
    counts["seconds"] = time.perf_counter() - started
    return {"counts": counts, "examples": examples}


@cli
def main() -> None:
    """Print, per tokenizer kind and label position, how many gold mentions come back exactly."""
    torch.set_num_threads(1)
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--data", type=Path, default=Path(os.environ.get("PHARMACONER_DIR", "data/pharmaconer"))
    )
    parser.add_argument("--split", default="test")
    parser.add_argument("--vocab", type=int, default=8000)
    parser.add_argument("--max-length", type=int, default=128)
    parser.add_argument("--stride", type=int, default=32)
    parser.add_argument("--cache-dir", type=Path, default=Path.home() / ".cache" / "clinical_ner")
    parser.add_argument(
        "--examples",
        type=int,
        default=0,
        help="examples printed per loss class (shows clinical text: opt in)",
    )
    args = parser.parse_args()

    texts = [doc.text for split in ("train", "dev") for doc in read_split(args.data / split)]
    docs = read_split(args.data / args.split)
    label2id = {label: i for i, label in enumerate(bio_labels([s.type for d in docs for s in d.spans]))}
    tokenizers = {
        "sentencepiece_bpe": load_or_train_tokenizer("sentencepiece_bpe", args.vocab, texts, args.cache_dir),
        "byte_level_bpe": load_or_train_tokenizer("byte_level_bpe", args.vocab, texts, args.cache_dir),
        # For comparison only: the exact Llama 3 pre-split, which glues "(" to the next word.
        "byte_level_bpe[llama3 regex]": _train_byte_level_bpe(args.vocab, texts, pattern=LLAMA3_SPLIT),
    }
    reasons = [
        "boundary inside a word",
        "sub-token/unit crosses entity boundary",
        "merged with adjacent mention",
        "decoded span too wide",
        "other",
    ]
    short = ["in-word", "crosses", "merged", "too-wide", "other"]
    print(f"split={args.split} vocab={args.vocab} max_length={args.max_length} stride={args.stride}")
    header = f"{'tokenizer':30} {'position':8} {'gold':>5} {'kept':>5} {'survival':>8} {'spurious':>8} "
    print(header + " ".join(f"{s:>8}" for s in short) + f" {'windows':>7} {'split':>5} {'secs':>5}")
    details = []
    for name, tokenizer in tokenizers.items():
        for position in POSITIONS:
            result = measure(tokenizer, docs, label2id, position, args)
            c = result["counts"]
            lost = sum(c[r] for r in reasons)
            row = f"{name:30} {position:8} {c['gold']:5d} {c['gold'] - lost:5d} {1 - lost / c['gold']:8.2%} "
            row += f"{c['spurious']:8d} " + " ".join(f"{c[r]:8d}" for r in reasons)
            print(row + f" {c['windows']:7d} {c['multi-window sentences']:5d} {c['seconds']:5.1f}")
            details.append((name, position, result["examples"]))
    if args.examples:
        print("\nexamples of losses:")
    for name, position, examples in details:
        for reason, items in examples.items():
            for item in items[: args.examples]:
                print(f"  {name} / {position} / {reason}: {item}")


if __name__ == "__main__":
    main()

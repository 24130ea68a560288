"""`python -m clinical_ner.analysis.lengths [--out tables] [--families F...] [overrides...]`

Token lengths of the NER corpus in each family's tokenizer (at the configured scale: trained locally at tiny
scale, the checkpoint's at paper scale, exactly as the training stages build them): documents, sentences, full
seq2seq prompts (template + instruction + the unit's text; the original counted prompts without the text) and
JSON targets, with percentiles and the maximum lengths they suggest. Writes lengths.md, lengths.csv and
lengths_recommended.csv.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from clinical_ner.analysis.length_stats import coverage, length_stats, round_up
from clinical_ner.approaches.seq2seq.datamodule import prompt_split, training_examples
from clinical_ner.approaches.seq2seq.prompt import IGNORE, PromptRenderer, make_renderer
from clinical_ner.approaches.seq2seq.units import make_units
from clinical_ner.cache.location import cache_dir
from clinical_ner.config import compose_config
from clinical_ner.data.ner_corpus import corpus_types, limit_splits, load_ner_splits
from clinical_ner.data.types import Document
from clinical_ner.errors import UserError, cli, module_parser
from clinical_ner.files.atomic import atomic_write_text
from clinical_ner.models.factory import make_tokenizer
from clinical_ner.models.weights import checkpoint_source
from clinical_ner.reports.labels import family_name
from clinical_ner.reports.render import Table, markdown_table, to_csv, write_table

FAMILIES = ("llama2", "llama3", "llama3_1", "llama3_2")
UNITS = ("document", "sentence")
OWN_GROUPS = ("model", "approach")  # set here, per family and approach
TEXTS = {
    "document": "BOS + the whole document",
    "sentence": "BOS + one sentence (a token-classification window before any split)",
    "prompt_document": "seq2seq prompt of a document (template + instruction + text, BOS included)",
    "prompt_sentence": "seq2seq prompt of a sentence",
    "target_document": "JSON answer of a document + end token",
    "target_sentence": "JSON answer of a sentence + end token",
    "example_document": "training example of a document (prompt + answer)",
    "example_sentence": "training example of a sentence (prompt + answer)",
}


@dataclass
class FamilyLengths:
    """One family's token lengths per kind of text, and the configured limits they are compared with."""

    family: str
    tokenizer: str
    lengths: dict[str, list[int]]
    configured: dict[str, Any]


@dataclass(frozen=True)
class Recommendation:
    """A config key, the unit it applies to, its configured value and the share it covers, the suggestion
    (p99, rounded up) and the value that covers every unit (max, rounded up)."""

    setting: str
    unit: str
    configured: int
    covered: float
    recommended: int
    lossless: int
    basis: str


def compose(family: str, approach: str, overrides: Sequence[str]):
    """The run config of `family` x `approach` with the user's overrides."""
    return compose_config([*overrides, f"model={family}", f"approach={approach}"])


def load_documents(cfg) -> tuple[dict[str, list[Document]], list[Document]]:
    """(all splits unlimited, the documents a run sees: every split after data limits, pooled)."""
    full = load_ner_splits(cfg.data, cache_dir(cfg.cache_dir))
    limited = limit_splits(full, cfg.data)
    return full, [doc for split in ("train", "dev", "test") for doc in limited[split]]


def text_lengths(tokenizer, texts: Sequence[str]) -> list[int]:
    """Tokens of each text with BOS, as a model input starts (no EOS: the tokenizers never add one)."""
    if not texts:
        return []
    bos = 0 if tokenizer.bos_token_id is None else 1
    return [bos + len(ids) for ids in tokenizer(list(texts), add_special_tokens=False)["input_ids"]]


def answer_lengths(
    docs: Sequence[Document], renderer: PromptRenderer, unit: str
) -> tuple[list[int], list[int]]:
    """(training example lengths, answer lengths) of `unit`, built exactly as training builds them (none
    skipped: the limit is what we are measuring)."""
    examples, _ = training_examples(docs, renderer, unit, max_length=sys.maxsize)
    answers = [sum(1 for label in e["labels"] if label != IGNORE) for e in examples]
    return [len(e["input_ids"]) for e in examples], answers


def _tokenizer_name(cfg, instruct: bool) -> str:
    if cfg.scale.pretrained:
        return checkpoint_source(cfg.model, instruct)
    return f"{cfg.model.tokenizer_kind} trained here (vocab {cfg.scale.vocab_size})"


def measure_family(
    family: str,
    overrides: Sequence[str] = (),
    corpus: tuple[dict[str, list[Document]], list[Document]] | None = None,
) -> FamilyLengths:
    """Every kind of length for one family; `corpus` (from `load_documents`) avoids re-reading the data."""
    tok_cfg, s2s_cfg = compose(family, "tokencls", overrides), compose(family, "seq2seq", overrides)
    full, docs = corpus if corpus is not None else load_documents(tok_cfg)
    cache = cache_dir(tok_cfg.cache_dir)
    # the tokenizer text of every stage (train + dev, unlimited), so the tiny tokenizer is the runs' own
    texts = [doc.text for doc in full["train"] + full["dev"]]
    base = make_tokenizer(tok_cfg.model, tok_cfg.scale, texts, cache)
    instruct = make_tokenizer(s2s_cfg.model, s2s_cfg.scale, texts, cache, instruct=True)
    renderer = make_renderer(
        s2s_cfg.approach.prompt, instruct, corpus_types(s2s_cfg.data, full), s2s_cfg.scale.pretrained
    )
    sentences = [unit.text for doc in docs for unit in make_units(doc, "sentence", doc.spans)]
    lengths = {
        "document": text_lengths(base, [doc.text for doc in docs]),
        "sentence": text_lengths(base, sentences),
    }
    for unit in UNITS:
        lengths[f"prompt_{unit}"] = prompt_split(docs, renderer, unit).lengths
        lengths[f"example_{unit}"], lengths[f"target_{unit}"] = answer_lengths(docs, renderer, unit)
    scale = s2s_cfg.scale
    positions = (
        scale.max_position_embeddings if not scale.pretrained else s2s_cfg.model.arch.max_position_embeddings
    )
    configured = {
        "tokencls_max_length": int(tok_cfg.approach.max_length),
        "seq2seq_max_length": int(s2s_cfg.approach.max_length),
        "max_new_tokens": int(s2s_cfg.approach.max_new_tokens),
        "unit": str(s2s_cfg.approach.unit),
        "positions": int(positions),
        "scale": str(scale.name),
        "data": str(s2s_cfg.data.name),
        "documents": len(docs),
    }
    names = {_tokenizer_name(tok_cfg, False), _tokenizer_name(s2s_cfg, True)}
    return FamilyLengths(family, " / ".join(sorted(names)), lengths, configured)


def recommendation(
    setting: str, unit: str, configured: int, lengths: Sequence[int], basis: str
) -> Recommendation:
    """Suggest p99 rounded up to a multiple of 64 (and the max, rounded up, as the value that loses nothing)."""
    stats = length_stats(lengths)
    return Recommendation(
        setting,
        unit,
        configured,
        coverage(lengths, configured),
        round_up(stats.p99),
        round_up(stats.max),
        basis,
    )


def recommendations(result: FamilyLengths) -> list[Recommendation]:
    """tokencls max_length from sentences (longer ones become overlapping windows), seq2seq max_length from
    training examples (longer ones are skipped), max_new_tokens from answers (a cut answer is broken JSON and
    loses its unit's mentions), for the configured seq2seq unit first."""
    conf, lengths = result.configured, result.lengths
    rows = [
        recommendation(
            "approach.max_length (tokencls)",
            "sentence",
            conf["tokencls_max_length"],
            lengths["sentence"],
            "sentences",
        )
    ]
    for unit in sorted(UNITS, key=lambda unit: unit != conf["unit"]):
        rows += [
            recommendation(
                "approach.max_length (seq2seq)",
                unit,
                conf["seq2seq_max_length"],
                lengths[f"example_{unit}"],
                "training examples",
            ),
            recommendation(
                "approach.max_new_tokens", unit, conf["max_new_tokens"], lengths[f"target_{unit}"], "answers"
            ),
        ]
    return rows


def stats_table(results: Sequence[FamilyLengths]) -> Table:
    """Markdown and CSV of the length distributions, a row per family and kind of text."""
    rows, csv_rows = [], []
    for result in results:
        for kind, description in TEXTS.items():
            s = length_stats(result.lengths[kind])
            numbers = [s.n, f"{s.mean:.1f}", s.p50, s.p90, s.p95, s.p99, s.max]
            rows.append([family_name(result.family), kind, *map(str, numbers)])
            csv_rows.append([result.family, result.tokenizer, kind, description, *numbers])
    first = results[0].configured if results else {}
    caption = [
        f"Token lengths. Scale: {first.get('scale', '-')}. Data: {first.get('data', '-')}, "
        f"{first.get('documents', 0)} documents (train + dev + test after data limits).",
        "Prompts are complete: template, instruction and the unit's text (the original counted them without "
        "the text). Percentiles are nearest-rank (lengths that occur).",
        "Tokenizers: " + "; ".join(f"{family_name(r.family)}: {r.tokenizer}" for r in results) + ".",
        "Texts: " + "; ".join(f"`{kind}`: {text}" for kind, text in TEXTS.items()) + ".",
    ]
    return Table(
        title="Token lengths",
        caption=caption,
        header=["Family", "Text", "n", "mean", "p50", "p90", "p95", "p99", "max"],
        rows=rows,
        csv_header=[
            "family",
            "tokenizer",
            "text",
            "description",
            "n",
            "mean",
            "p50",
            "p90",
            "p95",
            "p99",
            "max",
        ],
        csv_rows=csv_rows,
        notes=_recommendation_notes(results),
    )


def recommendation_rows(results: Sequence[FamilyLengths]) -> tuple[list[str], list[list[object]]]:
    """CSV header and rows of every family's recommendations."""
    header = ["family", "setting", "unit", "configured", "covered", "recommended_p99", "covers_all", "from"]
    rows: list[list[object]] = [
        [r.family, x.setting, x.unit, x.configured, f"{x.covered:.4f}", x.recommended, x.lossless, x.basis]
        for r in results
        for x in recommendations(r)
    ]
    return header, rows


def _recommendation_notes(results: Sequence[FamilyLengths]) -> list[str]:
    rows, warnings = [], []
    for result in results:
        conf = result.configured
        for x in recommendations(result):
            unit = (
                f"{x.unit} (configured)" if x.unit == conf["unit"] and "tokencls" not in x.setting else x.unit
            )
            numbers = [str(x.configured), f"{100 * x.covered:.2f}", str(x.recommended), str(x.lossless)]
            rows.append([family_name(result.family), x.setting, unit, *numbers, x.basis])
        needed = max(result.lengths[f"prompt_{conf['unit']}"] or [0]) + conf["max_new_tokens"]
        if needed > conf["positions"]:
            warnings.append(
                f"- {family_name(result.family)}: the longest {conf['unit']} prompt + max_new_tokens = {needed} "
                f"tokens, more than the model's {conf['positions']} positions."
            )
    header = [
        "Family",
        "Setting",
        "Unit",
        "Configured",
        "Covered (%)",
        "Recommended (p99)",
        "Covers all (max)",
        "From",
    ]
    notes = [
        "## Recommended maximum lengths",
        "Covered: share of units that fit in the configured value (tokencls: longer sentences become overlapping "
        "windows; seq2seq: longer training examples are skipped; longer answers are cut, which breaks their "
        "JSON). Recommended: the 99th percentile, and the value that covers every unit, both rounded up to a "
        "multiple of 64.",
        markdown_table(header, rows),
    ]
    return notes + (["\n".join(warnings)] if warnings else [])


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = module_parser("clinical_ner.analysis.lengths", __doc__.split("\n\n")[1])
    parser.add_argument("overrides", nargs="*", help="Hydra overrides (scale=paper, data=synthetic, ...)")
    parser.add_argument("--out", type=Path, default=Path("tables"), help="output folder (default: tables)")
    parser.add_argument("--families", nargs="+", default=list(FAMILIES), help="model families to measure")
    return parser.parse_args(argv)


def write_lengths(results: Sequence[FamilyLengths], out: Path) -> list[Path]:
    """lengths.md, lengths.csv and lengths_recommended.csv into `out`."""
    out.mkdir(parents=True, exist_ok=True)
    written = write_table(out, "lengths", stats_table(results))
    header, rows = recommendation_rows(results)
    path = out / "lengths_recommended.csv"
    atomic_write_text(path, to_csv(Table("", [], [], [], header, rows)))
    return [*written, path]


@cli
def main(argv: Sequence[str] | None = None) -> int:
    """Measure every family, write the tables, print the recommendations."""
    args = parse_args(argv)
    own = [o for o in args.overrides if o.split("=", 1)[0].lstrip("+~") in OWN_GROUPS]
    if own:
        raise UserError(f"{', '.join(own)}: this command sets model and approach itself (use --families)")
    first = compose(args.families[0], "tokencls", args.overrides)
    corpus = load_documents(first)
    results = [measure_family(family, args.overrides, corpus) for family in args.families]
    written = write_lengths(results, args.out)
    for result in results:
        for x in recommendations(result):
            print(
                f"{result.family:9} {x.setting:31} {x.unit:9} configured {x.configured:5} "
                f"(covers {100 * x.covered:6.2f}%) -> recommended {x.recommended} (all: {x.lossless})"
            )
    print(f"wrote {len(written)} files to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

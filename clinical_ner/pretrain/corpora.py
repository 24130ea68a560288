"""Continual-pretraining corpora: find them, read them, hold out a validation slice, mix languages.

Layout: a root folder (`corpus.root`, else $CLINICAL_NER_CORPORA) holding `es/` and `en/`; inside each, any mix
of DailyMed SPL XML (`*.xml`), JSON Lines (`*.jsonl`, one `{"id", "text"}` object per line) and plain text
(`*.txt`, one document per file), in any subfolder. Documents are read in sorted path order so that every
seeded choice below is reproducible.
"""

from __future__ import annotations

import json
import os
import random
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TypeVar

from clinical_ner.data.types import Document
from clinical_ner.errors import UserError
from clinical_ner.pretrain.spl import read_spl

T = TypeVar("T")

ENV_VAR = "CLINICAL_NER_CORPORA"
LANGUAGES: dict[str, tuple[str, ...]] = {"es": ("es",), "en": ("en",), "bilingual": ("es", "en")}
SUFFIXES = (".xml", ".jsonl", ".txt")


def languages(corpus_name: str) -> tuple[str, ...]:
    """The language folders a corpus option reads (`bilingual` = both)."""
    try:
        return LANGUAGES[str(corpus_name)]
    except KeyError:
        raise UserError(f"unknown corpus '{corpus_name}' (expected none, {', '.join(LANGUAGES)})") from None


def locate_corpora(root: str | Path | None) -> Path:
    """The folder holding `en/` and `es/`: `corpus.root`, else $CLINICAL_NER_CORPORA; UserError when neither."""
    origin = "corpus.root"
    if root is None or str(root) == "":
        root, origin = os.environ.get(ENV_VAR, ""), ENV_VAR
    if not root:
        raise UserError(
            f"no pretraining corpus: set {ENV_VAR}=DIR or corpus.root=DIR (a folder holding es/ and en/; "
            "fill it with `python -m clinical_ner.data.download dailymed|cima --limit N --out DIR/en|es`)"
        )
    path = Path(root).expanduser()
    if not path.is_dir():
        raise UserError(f"{origin}={path} is not a folder (expected one holding es/ and en/)")
    return path


def corpus_files(folder: Path) -> list[Path]:
    """Corpus files under `folder` (recursive, sorted, hidden files skipped); UserError when there are none."""
    if not folder.is_dir():
        raise UserError(f"pretraining corpus folder {folder} does not exist")
    files = sorted(
        path
        for path in folder.rglob("*")
        if path.is_file()
        and path.suffix.lower() in SUFFIXES
        and not any(part.startswith(".") for part in path.relative_to(folder).parts)
    )
    if not files:
        raise UserError(f"pretraining corpus folder {folder} holds no {', '.join(SUFFIXES)} file")
    return files


def read_jsonl(path: Path) -> list[tuple[str, str]]:
    """(id, text) of each line of a JSON Lines file; a bad line is a UserError naming `path:line`."""
    docs = []
    with open(path, encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
                doc_id, text = record["id"], record["text"]
            except (json.JSONDecodeError, KeyError, TypeError) as err:
                raise UserError(
                    f'{path}:{number}: expected a JSON object with "id" and "text" ({err})'
                ) from None
            if not isinstance(text, str):
                raise UserError(f'{path}:{number}: "text" must be a string')
            docs.append((str(doc_id), text))
    return docs


def read_file(path: Path, folder: Path) -> list[Document]:
    """Documents of one corpus file; ids are unique within the language folder."""
    suffix = path.suffix.lower()
    try:
        if suffix == ".xml":
            pairs = read_spl(path)
        elif suffix == ".jsonl":
            pairs = read_jsonl(path)
        else:
            pairs = [(path.relative_to(folder).with_suffix("").as_posix(), path.read_text(encoding="utf-8"))]
    except UnicodeDecodeError as err:
        raise UserError(f"{path}: not UTF-8 text ({err.reason} at byte {err.start})") from None
    return [Document(doc_id, text) for doc_id, text in pairs if text.strip()]


def read_language(folder: Path) -> list[Document]:
    """Every document of one language folder, in sorted file order; duplicate ids are a UserError."""
    docs: list[Document] = []
    seen: dict[str, Path] = {}
    for path in corpus_files(folder):
        for doc in read_file(path, folder):
            if doc.id in seen:
                raise UserError(f"{path}: document id {doc.id!r} already used in {seen[doc.id]}")
            seen[doc.id] = path
            docs.append(doc)
    return docs


def split_heldout(items: Sequence[T], fraction: float, seed: int) -> tuple[list[T], list[T]]:
    """(train, held-out) by document: a seeded `fraction` of the items (at least one when there are two or more)."""
    if not 0 <= fraction < 1:
        raise UserError(f"corpus.val_fraction must be in [0, 1), got {fraction}")
    order = list(range(len(items)))
    random.Random(seed).shuffle(order)
    count = round(len(items) * fraction)
    if fraction > 0 and len(items) >= 2:
        count = max(1, count)
    held = set(order[:count])
    train = [item for i, item in enumerate(items) if i not in held]
    return train, [item for i, item in enumerate(items) if i in held]


def mix_languages(
    by_language: dict[str, list[T]], length: Callable[[T], int], es_ratio: float | None, seed: int
) -> list[T]:
    """Interleave the languages' documents in one seeded shuffle.

    `es_ratio` (Spanish share of tokens) subsamples documents of the over-represented side, never repeats any;
    None keeps every document of both.
    """
    chosen = {lang: list(docs) for lang, docs in by_language.items()}
    rng = random.Random(seed)
    if es_ratio is not None and set(chosen) == {"es", "en"}:
        if not 0 < es_ratio < 1:
            raise UserError(f"corpus.es_ratio must be in (0, 1) or null, got {es_ratio}")
        tokens = {lang: sum(length(doc) for doc in docs) for lang, docs in chosen.items()}
        # keep all of the scarcer side; the other is cut down to reach the ratio
        want_en = tokens["es"] * (1 - es_ratio) / es_ratio
        if want_en < tokens["en"]:
            trim, budget = "en", want_en
        else:
            trim, budget = "es", tokens["en"] * es_ratio / (1 - es_ratio)
        docs = chosen[trim]
        order = list(range(len(docs)))
        rng.shuffle(order)
        kept, total = set(), 0
        for i in order:
            size = length(docs[i])
            if total + size / 2 > budget:  # stop at the document count nearest to the budget
                break
            kept.add(i)
            total += size
        chosen[trim] = [doc for i, doc in enumerate(docs) if i in kept]
    mixed = [doc for lang in sorted(chosen) for doc in chosen[lang]]
    rng.shuffle(mixed)
    return mixed

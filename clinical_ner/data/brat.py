"""Strict BRAT standoff reader/writer for PharmaCoNER (`<id>.txt` + `<id>.ann`, contiguous T lines only).

Errors and log messages name files, line numbers, mention ids and offsets, never document text (it is clinical data).
"""

from __future__ import annotations

import logging
import os
import re
import tempfile
from collections.abc import Collection, Iterable, Mapping
from pathlib import Path

from clinical_ner.data.types import Document, Span
from clinical_ner.errors import UserError
from clinical_ner.files.atomic import atomic_write_text

logger = logging.getLogger(__name__)

# How far (in characters) a mention may be shifted to match its surface text; the known quirk needs 2.
REPAIR_WINDOW = 10

_MENTION_ID = re.compile(r"T[0-9]+")
# First characters of BRAT annotations other than T (text-bound) lines: notes (#), normalisations (N),
# attributes (A/M), relations (R), events (E), equivalences (*); they carry no mention and are skipped.
_OTHER_ANNOTATIONS = ("#", "N", "A", "M", "R", "E", "*")
_OFFSET = re.compile(r"[0-9]+|-[0-9]+")
# Types are echoed in error messages only when they look like a label, so garbage text is never printed.
_LABEL_LIKE = re.compile(r"[A-Za-z0-9_\-\[\]]{1,40}")


def read_text(path: Path) -> str:
    """Decode a whole file as UTF-8 without newline translation (offsets count every character)."""
    try:
        data = path.read_bytes()
    except OSError as err:
        raise UserError(f"{path}: cannot read file ({err.strerror})") from None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as err:
        raise UserError(f"{path}: not valid UTF-8 text (byte {err.start})") from None


def _find_nearby(text: str, start: int, surface: str) -> int | None:
    """Start of the occurrence of `surface` nearest to `start` within REPAIR_WINDOW, or None."""
    if not surface:
        return None
    for shift in range(1, REPAIR_WINDOW + 1):
        # Ties go to the earlier position: check -shift before +shift.
        for candidate in (start - shift, start + shift):
            if candidate >= 0 and text.startswith(surface, candidate):
                return candidate
    return None


def _parse_t_line(
    line: str, where: str, text_len: int, types: Collection[str] | None
) -> tuple[str, Span, str]:
    """Validate one T line; return (mention id, span, surface) or raise UserError naming `where` (file:line)."""
    fields = line.split("\t")
    if len(fields) != 3:
        raise UserError(
            f"{where}: expected 3 tab-separated fields (id, 'TYPE START END', text), found {len(fields)}"
        )
    mention_id, annotation, surface = fields
    if not _MENTION_ID.fullmatch(mention_id):
        raise UserError(f"{where}: mention id is not of the form T<number>")
    if ";" in annotation:
        raise UserError(f"{where}: {mention_id} has a discontinuous span ('a b;c d'), which is not supported")
    tokens = annotation.split()
    if len(tokens) != 3:
        raise UserError(
            f"{where}: {mention_id} needs 'TYPE START END' in field 2, found {len(tokens)} token(s)"
        )
    label, start_text, end_text = tokens
    for name, value in (("start", start_text), ("end", end_text)):
        if not _OFFSET.fullmatch(value):
            raise UserError(f"{where}: {mention_id} {name} offset is not an integer")
    start, end = int(start_text), int(end_text)
    if start < 0:
        raise UserError(f"{where}: {mention_id} start offset {start} is negative")
    if end <= start:
        raise UserError(f"{where}: {mention_id} end offset {end} is not after start offset {start}")
    if end > text_len:
        raise UserError(
            f"{where}: {mention_id} end offset {end} is past the end of the text ({text_len} chars)"
        )
    if types is not None and label not in types:
        shown = repr(label) if _LABEL_LIKE.fullmatch(label) else "(not a label)"
        raise UserError(f"{where}: {mention_id} has unknown type {shown}; expected one of {sorted(types)}")
    return mention_id, Span(start, end, label), surface


def _repair(doc_id: str, mention_id: str, text: str, span: Span, surface: str) -> Span | None:
    """Return the span moved onto its surface text (or None to drop it), logging ids and offsets only."""
    new_start = _find_nearby(text, span.start, surface)
    if new_start is None:
        logger.warning(
            "%s: %s offsets %d-%d do not match its text and it is not within %d chars; mention dropped",
            doc_id,
            mention_id,
            span.start,
            span.end,
            REPAIR_WINDOW,
        )
        return None
    repaired = Span(new_start, new_start + len(surface), span.type)
    logger.warning(
        "%s: %s offsets %d-%d -> %d-%d (repaired: offsets did not match its text)",
        doc_id,
        mention_id,
        span.start,
        span.end,
        repaired.start,
        repaired.end,
    )
    return repaired


def read_document(txt_path: Path, types: Collection[str] | None = None) -> Document:
    """Read `<id>.txt` and the `<id>.ann` beside it (missing .ann = no mentions) into a Document.

    Only T lines are read; other BRAT annotations are skipped and any other non-blank line is an error. Mentions whose offsets do not cover their surface text are shifted to the nearest
    occurrence within REPAIR_WINDOW characters, or dropped; both are logged. Spans are sorted and deduplicated.
    Raises UserError (one line, naming file and line) on undecodable files, malformed or unknown-type T lines
    and lines that are no BRAT annotation.
    """
    txt_path = Path(txt_path)
    if not txt_path.is_file():
        raise UserError(f"{txt_path}: text file not found")
    text = read_text(txt_path)
    doc_id = txt_path.stem
    ann_path = txt_path.with_suffix(".ann")
    if not ann_path.exists():
        return Document(id=doc_id, text=text, spans=[])
    spans: set[Span] = set()
    for lineno, raw_line in enumerate(read_text(ann_path).split("\n"), start=1):
        line = raw_line.rstrip("\r")
        if not line.strip() or line.startswith(_OTHER_ANNOTATIONS):
            continue
        if not line.startswith("T"):
            # a line of no BRAT kind: a corrupted or hand-edited file, whose mentions would vanish silently
            raise UserError(
                f"{ann_path}:{lineno}: not a BRAT annotation line (expected an id starting with T, "
                f"{', '.join(_OTHER_ANNOTATIONS)})"
            )
        mention_id, span, surface = _parse_t_line(line, f"{ann_path}:{lineno}", len(text), types)
        if text[span.start : span.end] != surface:
            span = _repair(doc_id, mention_id, text, span, surface)
            if span is None:
                continue
        spans.add(span)
    return Document(id=doc_id, text=text, spans=sorted(spans))


def read_split(folder: Path, types: Collection[str] | None = None) -> list[Document]:
    """Read every `*.txt` (with its .ann) in `folder`, sorted by document id."""
    folder = Path(folder)
    if not folder.is_dir():
        raise UserError(f"{folder}: folder not found")
    txt_paths = sorted(folder.glob("*.txt"), key=lambda path: path.stem)
    if not txt_paths:
        raise UserError(f"{folder}: no .txt documents in this folder")
    return [read_document(path, types) for path in txt_paths]


def entity_types(docs: Iterable[Document]) -> list[str]:
    """Sorted list of the entity types used by the documents' spans."""
    return sorted({span.type for doc in docs for span in doc.spans})


def format_ann(doc_text: str, spans: Iterable[Span]) -> str:
    """BRAT text for `spans`: lines `T{i}\\t{type} {start} {end}\\t{surface}`, sorted, deduplicated.

    Raises ValueError for a span outside the text, an empty span, a type with whitespace, or a surface containing
    a line break (it would corrupt the line-based format).
    """
    lines = []
    for index, span in enumerate(sorted(set(spans)), start=1):
        if not 0 <= span.start < span.end <= len(doc_text):
            raise ValueError(
                f"span {span.start}-{span.end} is empty or outside the text ({len(doc_text)} chars)"
            )
        if not span.type or any(char.isspace() for char in span.type):
            raise ValueError(f"span {span.start}-{span.end} has an empty type or a type with whitespace")
        surface = doc_text[span.start : span.end]
        if "\n" in surface or "\r" in surface:
            raise ValueError(f"span {span.start}-{span.end} covers a line break; BRAT cannot store it")
        lines.append(f"T{index}\t{span.type} {span.start} {span.end}\t{surface}\n")
    return "".join(lines)


def write_ann(path: Path, doc_text: str, spans: Iterable[Span]) -> None:
    """Atomically write `spans` as a BRAT .ann file (empty file when there are none)."""
    atomic_write_text(path, format_ann(doc_text, spans))


def write_predictions(folder: Path, predictions: Mapping[str, tuple[str, Iterable[Span]]]) -> None:
    """Write `<id>.ann` into `folder` (created if needed) for each `id -> (text, spans)`: all or nothing, as
    every file is written into a staging folder first and moved in only once all were written (a full disk
    leaves no partial prediction set to be scored)."""
    folder = Path(folder)
    for doc_id in predictions:
        # A doc id is a file stem; anything path-like would write outside the folder.
        if not doc_id or Path(doc_id).name != doc_id or doc_id in (".", ".."):
            raise ValueError(f"document id {doc_id!r} is not a plain file name")
    folder.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=folder, prefix=".writing-") as name:
        staging = Path(name)
        for doc_id, (doc_text, spans) in predictions.items():
            (staging / f"{doc_id}.ann").write_text(format_ann(doc_text, spans), encoding="utf-8", newline="")
        for doc_id in predictions:  # renames within one file system: no new space needed
            os.replace(staging / f"{doc_id}.ann", folder / f"{doc_id}.ann")

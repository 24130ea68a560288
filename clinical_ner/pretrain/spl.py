"""DailyMed Structured Product Labeling (HL7 v3 SPL XML) to plain text, one document per top-level section.

Only the label's prose is kept: each section's `<title>` and `<text>` (paragraphs, list items, table rows with
cells separated by ` | `), recursing into subsections. Product data elements, images and the highlights
excerpts (a summary repeating the full text) are skipped. A top-level section (Indications, Dosage, Adverse
reactions, ...) is the unit of a document so that even a handful of labels gives a usable held-out slice.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from pathlib import Path

from clinical_ner.errors import UserError

NS = "urn:hl7-org:v3"
_Q = f"{{{NS}}}"
# Elements that start a new line; everything else inside <text> is inline markup (content, sup, linkHtml...).
_BLOCKS = {
    "paragraph",
    "item",
    "tr",
    "caption",
    "title",
    "list",
    "table",
    "thead",
    "tbody",
    "tfoot",
    "footnote",
}
_CELLS = {"td", "th"}
_SKIPPED = {"renderMultiMedia", "col", "colgroup"}
_SPACES = re.compile(r"\s+")


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


class _Lines:
    """Collects inline text into the current line and flushes it at block boundaries."""

    def __init__(self) -> None:
        self.lines: list[str] = []
        self._parts: list[str] = []

    def add(self, text: str | None) -> None:
        if text:
            self._parts.append(text)

    def flush(self) -> None:
        line = _SPACES.sub(" ", "".join(self._parts)).strip(" |")
        if line:
            self.lines.append(line)
        self._parts = []


def _render(element: ET.Element, out: _Lines, in_cell: bool = False) -> None:
    """Depth-first walk of a `<text>` element; block elements and `<br>` end lines, cells are separated.

    Inside a table cell, blocks and breaks become spaces so that a row stays on one line.
    """
    out.add(element.text)
    for child in element:
        tag = _local(child.tag)
        if tag in _SKIPPED:
            pass
        elif in_cell and (tag in _BLOCKS or tag == "br"):
            out.add(" ")
            _render(child, out, in_cell)
            out.add(" ")
        elif tag == "br":
            out.flush()
        elif tag in _BLOCKS:
            out.flush()
            _render(child, out)
            out.flush()
        elif tag in _CELLS:
            _render(child, out, in_cell=True)
            out.add(" | ")
        else:
            _render(child, out, in_cell)
        out.add(child.tail)


def section_text(section: ET.Element) -> str:
    """Title, text and subsections of one SPL `<section>`, markup stripped, one block per line."""
    out = _Lines()
    _section_lines(section, out)
    return "\n".join(out.lines)


def _section_lines(section: ET.Element, out: _Lines) -> None:
    title = section.find(f"{_Q}title")
    if title is not None:
        _render(title, out)
        out.flush()
    text = section.find(f"{_Q}text")
    if text is not None:
        _render(text, out)
        out.flush()
    for sub in section.findall(f"{_Q}component/{_Q}section"):
        _section_lines(sub, out)


def read_spl(path: Path) -> list[tuple[str, str]]:
    """(id, text) of each non-empty top-level section of an SPL file; ids are `<file stem>#<n>`."""
    try:
        root = ET.parse(path).getroot()
    except ET.ParseError as err:
        raise UserError(f"{path}: not well-formed XML ({err})") from None
    if root.tag != f"{_Q}document":
        raise UserError(
            f"{path}: not an SPL document (root <{_local(root.tag)}> in namespace {NS!r} expected)"
        )
    sections = root.findall(f"{_Q}component/{_Q}structuredBody/{_Q}component/{_Q}section")
    docs = []
    for index, section in enumerate(sections):
        text = section_text(section)
        if text:
            docs.append((f"{path.stem}#{index}", text))
    return docs

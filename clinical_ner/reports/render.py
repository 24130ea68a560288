"""A report table and its two renderings: Markdown for reading, CSV for machines (percent, 4 decimals).

Both are written atomically (temp file + rename), so a report folder never holds half a table.
"""

from __future__ import annotations

import csv
import io
import os
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from clinical_ner.files.atomic import atomic_write_text
from clinical_ner.reports.bootstrap import Interval
from clinical_ner.reports.cells import Summary

MISSING = "-"
FAILED = "failed"


@dataclass
class Table:
    """A titled table: Markdown header/rows (formatted text) and CSV header/rows (raw values)."""

    title: str
    caption: list[str]
    header: list[str]
    rows: list[list[str]]
    csv_header: list[str]
    csv_rows: list[list[object]]
    notes: list[str] = field(default_factory=list)


def mean_std(summary: Summary, scale: float = 100.0, digits: int = 2) -> str:
    """ "74.77 ± 0.51" (std only with more than one seed); `scale` 100 turns fractions into percents."""
    if summary.mean is None:
        return MISSING
    text = f"{scale * summary.mean:.{digits}f}"
    return text if summary.std is None else f"{text} ± {scale * summary.std:.{digits}f}"


def with_interval(summary: Summary, interval: Interval | None) -> str:
    """A percent mean ± std followed by its bootstrap interval, "74.77 ± 0.51 [73.10, 76.20]"."""
    text = mean_std(summary)
    if interval is None or summary.mean is None:
        return text
    return f"{text} [{100 * interval.low:.2f}, {100 * interval.high:.2f}]"


def csv_number(value: float | None, scale: float = 1.0) -> str:
    """A CSV field: the value times `scale` with 4 decimals, empty when missing."""
    return "" if value is None else f"{scale * value:.4f}"


def csv_percent(value: float | None) -> str:
    """A fraction as a CSV percent field."""
    return csv_number(value, 100.0)


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """A GitHub Markdown table; numeric-looking columns are right-aligned."""
    align = ["---:" if _numeric_column(rows, i) else "---" for i in range(len(header))]
    lines = [_md_row(header), _md_row(align), *(_md_row(row) for row in rows)]
    return "\n".join(lines)


def _md_row(cells: Sequence[str]) -> str:
    return "| " + " | ".join(str(cell).replace("|", "\\|") for cell in cells) + " |"


def _numeric_column(rows: Sequence[Sequence[str]], index: int) -> bool:
    values = [str(row[index]) for row in rows if str(row[index]) not in (MISSING, FAILED, "")]
    return bool(values) and all(v[:1].isdigit() or v[:1] == "-" for v in values)


def to_markdown(table: Table) -> str:
    """The whole Markdown file: title, caption (scale, budget, seeds...), table, notes."""
    parts = [f"# {table.title}", *table.caption]  # one paragraph per caption line
    parts.append(markdown_table(table.header, table.rows) if table.rows else "_None._")
    parts += table.notes
    return "\n\n".join(part for part in parts if part) + "\n"


def to_csv(table: Table) -> str:
    """The CSV file (comma-separated, `\\n` line ends, header first)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(table.csv_header)
    writer.writerows(table.csv_rows)
    return buffer.getvalue()


def write_table(out: Path, stem: str, table: Table) -> list[Path]:
    """Write `<stem>.md` and `<stem>.csv` into `out`; return their paths."""
    md, csv_path = out / f"{stem}.md", out / f"{stem}.csv"
    atomic_write_text(md, to_markdown(table))
    atomic_write_text(csv_path, to_csv(table))
    return [md, csv_path]


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write bytes through a temp file in the same folder + os.replace (figures)."""
    fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp_name, 0o644)
        os.replace(tmp_name, path)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise

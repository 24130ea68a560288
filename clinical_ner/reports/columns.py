"""The columns that say which cell a row is, in the Markdown and CSV versions of the by-cell tables: their
names, order and text in one place, so every table names a cell the same way."""

from __future__ import annotations

from collections.abc import Sequence

from clinical_ner.reports.cells import Cell, CellKey
from clinical_ner.reports.labels import approach_name, corpus_name, family_name
from clinical_ner.reports.render import MISSING
from clinical_ner.reports.scores import seeds_text

# the cell-key fields of a by-cell CSV row, in their column order
KEY_CSV = ("approach", "model", "corpus", "epoch", "scale", "data", "budget", "pretrain_budget")
# a by-cell CSV row's first columns: the cell, its Setting text and its seed count (`cell_csv`)
CELL_CSV_HEADER = [*KEY_CSV, "setting", "n_seeds"]


def key_csv(key: CellKey, names: Sequence[str] = KEY_CSV) -> list[object]:
    """CSV values of a cell key: its fields `names` (the epoch empty without continual pretraining), and
    `base_model` / `language` for the model's and corpus's display names."""
    shown = {"base_model": family_name(key.model), "language": corpus_name(key.corpus)}
    return [shown[n] if n in shown else "" if (v := getattr(key, n)) is None else v for n in names]


def cell_csv(cell: Cell, setting: str) -> list[object]:
    """The CELL_CSV_HEADER values of a cell."""
    return [*key_csv(cell.key), setting, len(cell.runs)]


def epoch_text(epoch: int | None) -> str:
    """The Epoch column: the continual-pretraining epoch, `-` without continual pretraining."""
    return MISSING if epoch is None else str(epoch)


def key_cells(key: CellKey) -> list[str]:
    """Markdown cells naming a cell key: approach, base model, language, epoch."""
    return [
        approach_name(key.approach),
        family_name(key.model),
        corpus_name(key.corpus),
        epoch_text(key.epoch),
    ]


# the Markdown columns of `key_cells`
KEY_HEADER = ["Approach", "Base model", "Language", "Epoch"]


def cell_header(show_setting: bool) -> list[str]:
    """Markdown columns naming a cell: approach, model, language, epoch, (setting,) seeds (`cell_cells`)."""
    return [*KEY_HEADER, *(["Setting"] if show_setting else []), "Seeds"]


def cell_cells(cell: Cell, setting: str, show_setting: bool) -> list[str]:
    """The `cell_header` cells of a cell's Markdown row."""
    return [*key_cells(cell.key), *([setting] if show_setting else []), seeds_text(cell)]

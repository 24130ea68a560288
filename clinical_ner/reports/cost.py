"""What each cell cost: fine-tuning time, continual-pretraining time, inference speed and peak memory."""

from __future__ import annotations

from collections.abc import Sequence

from clinical_ner.reports.captions import caption
from clinical_ner.reports.cells import Cell, Summary, metric, settings
from clinical_ner.reports.collect import Run
from clinical_ner.reports.columns import CELL_CSV_HEADER, cell_cells, cell_csv, cell_header
from clinical_ner.reports.render import FAILED, Table, csv_number, mean_std


def pretrain_seconds(run: Run) -> float | None:
    """Compute that trained the continued weights (`fit_seconds`), whether this run trained them or found
    them cached; None without continual pretraining."""
    pretrain = run.section("pretrain")
    value = pretrain.get("fit_seconds", pretrain.get("seconds"))
    return float(value) if isinstance(value, int | float) else None


def total_seconds(run: Run) -> float | None:
    """Fine-tuning plus the continual pretraining behind its weights: the cost of the model from scratch."""
    train = metric("train", "seconds")(run)
    if train is None:
        return None
    return train + (pretrain_seconds(run) or 0.0)


def total_minutes(run: Run) -> float | None:
    """`total_seconds` in minutes (the study's training-cost axis)."""
    seconds = total_seconds(run)
    return None if seconds is None else seconds / 60.0


def run_seconds(run: Run) -> float | None:
    """The run's wall time in phases (the sum of its `timings`); None for runs recorded before timings."""
    timings = run.section("timings")
    values = [v for v in timings.values() if isinstance(v, int | float) and not isinstance(v, bool)]
    return float(sum(values)) if values else None


# (CSV name, Markdown header, getter, decimals)
COLUMNS = (
    ("train_seconds", "Train (s)", metric("train", "seconds"), 1),
    ("pretrain_seconds", "Pretrain (s)", pretrain_seconds, 1),
    ("pretrain_stage_seconds", "Pretrain stage (s)", metric("pretrain", "seconds"), 1),
    ("total_seconds", "Total (s)", total_seconds, 1),
    ("total_minutes", "Total (min)", total_minutes, 1),
    ("train_tokens", "Train tokens", metric("train", "tokens"), 0),
    ("pretrain_tokens", "Pretrain tokens", metric("pretrain", "tokens"), 0),
    ("predict_test_seconds", "Predict test (s)", metric("timings", "predict_test"), 1),
    ("run_seconds", "Run (s)", run_seconds, 1),
    ("inference_documents_per_s", "Inference (docs/s)", metric("inference", "documents_per_s"), 1),
    ("peak_memory_mb", "Peak memory (MB)", metric("train", "peak_memory_mb"), 0),
    ("parameters", "Parameters", metric("train", "parameters"), 0),
    ("trainable_parameters", "Trainable", metric("train", "trainable_parameters"), 0),
    ("test_f1", "Test F1 (%)", metric("test", "f1"), 2),
)


def _cell_text(summary: Summary, name: str, decimals: int) -> str:
    scale = 100.0 if name == "test_f1" else 1.0
    return mean_std(summary, scale=scale, digits=decimals)


def cost_table(cells: Sequence[Cell]) -> Table:
    """A row per cell: mean ± std over seeds of each cost column."""
    setting = settings(cell.key for cell in cells)
    show = any(setting.values())
    rows, csv_rows = [], []
    for cell in cells:
        summaries = [cell.summary(get) for _, _, get, _ in COLUMNS]
        texts = [
            _cell_text(s, name, d) if cell.ok else FAILED
            for s, (name, _, _, d) in zip(summaries, COLUMNS, strict=True)
        ]
        rows.append([*cell_cells(cell, setting[cell.key], show), *texts])
        numbers = [
            csv_number(v, 100.0 if name == "test_f1" else 1.0)
            for s, (name, *_) in zip(summaries, COLUMNS, strict=True)
            for v in (s.mean, s.std)
        ]
        csv_rows.append([*cell_csv(cell, setting[cell.key]), *numbers])
    what = (
        "Cost per cell. Train: fine-tuning fit wall time. Pretrain: the continual pretraining that produced the "
        "starting weights (`pretrain.fit_seconds`, counted even when this run found them cached); Pretrain stage: "
        "what this run spent in the stage (a cache hit costs only the lookup). Total = Train + Pretrain. "
        "Train tokens: real tokens fine-tuned on; Pretrain tokens: those of the continual pretraining (all epochs). "
        "Predict test: the model's passes over the test set (generation for seq2seq); Run: every phase of the run "
        "(results.json `timings`: loading, fit, selection, prediction, scoring, saving, pretraining). "
        "Inference: test documents per second (prediction and decoding). Peak memory: GPU peak allocated on CUDA, "
        "else the process's peak resident set size."
    )
    return Table(
        title="Cost",
        caption=caption(what, cells, "Cells: mean ± sample std over seeds; `-`: not applicable."),
        header=[
            *cell_header(show),
            *(h for _, h, _, _ in COLUMNS),
        ],
        rows=rows,
        csv_header=[
            *CELL_CSV_HEADER,
            *(f"{name}_{part}" for name, *_ in COLUMNS for part in ("mean", "std")),
        ],
        csv_rows=csv_rows,
    )

"""Report figures (PNG, Agg, no pyplot state): precision vs recall, F1 by model x corpus, cost vs F1, and the
decision view (F1 with its interval against training and inference cost, per approach).

Figures are drawn on a bare `Figure` with fixed rc settings and saved without a Software stamp (no time or
version in the file), so the same runs give the same bytes.
"""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from pathlib import Path

import matplotlib
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch
from matplotlib.ticker import NullFormatter

from clinical_ner.reports.cells import Cell, CellKey, metric, settings
from clinical_ner.reports.cost import total_minutes, total_seconds
from clinical_ner.reports.labels import (
    APPROACH_ORDER,
    CORPUS_ORDER,
    FAMILY_ORDER,
    approach_name,
    family_name,
    rank,
)
from clinical_ner.reports.main_tables import decoding, output_format
from clinical_ner.reports.paper_results import PAPER_ROWS
from clinical_ner.reports.render import atomic_write_bytes
from clinical_ner.reports.scores import CellScores

MARKERS = {"tokencls": "o", "seq2seq": "s"}
CORPUS_SHORT = {"none": "", "es": "es", "en": "en", "bilingual": "es+en"}
DPI = 120


def _color(model: str) -> str:
    return f"C{rank(model, FAMILY_ORDER)[0] % 10}"


def _marker(approach: str) -> str:
    return MARKERS.get(approach, "^")


def _shorten(text: str, limit: int = 40) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _tag(cell: Cell) -> str:
    """Short point label: the corpus (and pretraining epoch) when continued, and a seq2seq answer format other
    than the JSON list; else empty."""
    key = cell.key
    corpus = CORPUS_SHORT.get(key.corpus, key.corpus)
    epoch = f" ep{key.epoch}" if key.epoch is not None else ""
    answer = output_format(key) if key.approach == "seq2seq" else "json"
    answer = "" if answer.startswith("json") else f" {answer}"
    return f"{corpus}{epoch}{answer}".strip()


def _annotate(ax: Axes, text: str, x: float, y: float) -> None:
    if text:  # kept out of tight_layout, so a label near the edge never shrinks the axes
        ax.annotate(text, (x, y), textcoords="offset points", xytext=(4, 4), fontsize=7).set_in_layout(False)


def _approaches(cells: Sequence[Cell]) -> list[str]:
    """The approaches among `cells`, in the paper's order."""
    return sorted({c.key.approach for c in cells}, key=lambda a: rank(a, APPROACH_ORDER))


def _approach_handles(cells: Sequence[Cell]) -> list[Line2D]:
    """Legend entries: each approach's marker."""
    return [
        Line2D([], [], marker=_marker(a), color="0.3", linestyle="", label=approach_name(a))
        for a in _approaches(cells)
    ]


def _log_x_if_wide(ax: Axes, xs: Sequence[float]) -> None:
    """A log x axis where the values span more than 20x (runs from minutes to hours: a log axis keeps both)."""
    if xs and min(xs) > 0 and max(xs) / min(xs) > 20:
        ax.set_xscale("log")
        ax.xaxis.set_minor_formatter(NullFormatter())


def _legend(ax: Axes, cells: Sequence[Cell], paper: bool = False) -> None:
    models = sorted({c.key.model for c in cells}, key=lambda m: rank(m, FAMILY_ORDER))
    handles = _approach_handles(cells)
    handles += [
        Line2D([], [], marker="o", color=_color(m), linestyle="", label=family_name(m)) for m in models
    ]
    if paper:
        handles.append(
            Line2D(
                [],
                [],
                marker="o",
                markerfacecolor="none",
                color="0.3",
                linestyle="",
                label="paper (other scoring)",
            )
        )
    if handles:
        ax.legend(handles=handles, fontsize=7, loc="best")


# settings that would otherwise come from the user's matplotlibrc; hashsalt fixes ids of vector backends
RC = {"svg.hashsalt": "clinical_ner", "path.simplify": True, "font.family": "DejaVu Sans"}


def _save(fig: Figure, path: Path) -> Path:
    buffer = io.BytesIO()
    with matplotlib.rc_context(RC):
        fig.savefig(buffer, format="png", dpi=DPI, metadata={"Software": None})
    atomic_write_bytes(path, buffer.getvalue())
    return path


def _mean(cell: Cell, section: str, name: str, scale: float = 100.0) -> tuple[float | None, float]:
    summary = cell.summary(metric(section, name))
    if summary.mean is None:
        return None, 0.0
    return scale * summary.mean, scale * (summary.std or 0.0)


def precision_recall(cells: Sequence[Cell], path: Path) -> Path:
    """Test precision vs recall (percent) per cell, error bars = seed std, the paper's points hollow."""
    fig = Figure(figsize=(6.4, 5.2))
    ax = fig.add_subplot()
    for cell in (c for c in cells if c.ok):
        (r, r_std), (p, p_std) = _mean(cell, "test", "recall"), _mean(cell, "test", "precision")
        if r is None or p is None:
            continue
        color = _color(cell.key.model)
        ax.errorbar(r, p, xerr=r_std, yerr=p_std, marker=_marker(cell.key.approach), color=color, capsize=2)
        _annotate(ax, _tag(cell), r, p)
    shown = {(c.key.approach, c.key.model) for c in cells}
    paper = [row for row in PAPER_ROWS if (row.approach, row.model) in shown]
    for row in paper:
        ax.plot(row.recall, row.precision, marker=_marker(row.approach), color=_color(row.model), mfc="none")
    for f1 in (20, 40, 60, 80):  # iso-F1 curves: P = F1 R / (2R - F1)
        rs = [f1 / 2 + 0.5 + i * (100 - f1 / 2 - 0.5) / 99 for i in range(100)]
        ps = [f1 * r / (2 * r - f1) for r in rs]
        ax.plot(rs, ps, color="0.85", linewidth=0.8, zorder=0)
    ax.set(
        xlim=(0, 100),
        ylim=(0, 100),
        xlabel="Recall (%)",
        ylabel="Precision (%)",
        title="Test precision vs recall",
    )
    _legend(ax, cells, paper=bool(paper))
    fig.tight_layout()
    return _save(fig, path)


def _series_of(cell: Cell, setting: Mapping[CellKey, str]) -> tuple[str, int, str]:
    """The bar series a cell belongs to: corpus, pretraining epoch, and its setting when settings differ."""
    key = cell.key
    return (key.corpus, -1 if key.epoch is None else key.epoch, setting.get(key, ""))


def _series_label(series: tuple[str, int, str]) -> str:
    corpus, epoch, extra = series
    return _shorten(" ".join(part for part in (corpus, "" if epoch < 0 else f"ep{epoch}", extra) if part))


def f1_by_model_corpus(cells: Sequence[Cell], path: Path) -> Path:
    """Grouped bars of test F1 (error bars: seed std): one panel per approach, a group per model, a bar per
    corpus (and pretraining epoch, and setting when settings differ); `failed` where no seed completed."""
    approaches = _approaches(cells) or ["none"]
    setting = settings(c.key for c in cells)
    fig = Figure(figsize=(max(6.4, 4.2 * len(approaches)), 4.4))
    axes = fig.subplots(1, len(approaches), squeeze=False)[0]
    for ax, approach in zip(axes, approaches, strict=True):
        mine = {(c.key.model, _series_of(c, setting)): c for c in cells if c.key.approach == approach}
        models = sorted({model for model, _ in mine}, key=lambda m: rank(m, FAMILY_ORDER))
        series = sorted({s for _, s in mine}, key=lambda s: (rank(s[0], CORPUS_ORDER), s[1], s[2]))
        width = 0.8 / max(1, len(series))
        for s, one in enumerate(series):
            for m, model in enumerate(models):
                cell = mine.get((model, one))
                if cell is None:
                    continue
                x = m - 0.4 + width * (s + 0.5)
                f1, std = _mean(cell, "test", "f1")
                if f1 is None:
                    ax.text(x, 1, "failed", rotation=90, ha="center", va="bottom", fontsize=7, color="red")
                    continue
                ax.bar(x, f1, width, yerr=std or None, color=f"C{s % 10}", capsize=2)
        handles = [Patch(color=f"C{s % 10}", label=_series_label(one)) for s, one in enumerate(series)]
        ax.set_xticks(range(len(models)), [family_name(m) for m in models])
        ax.set(ylim=(0, 100), ylabel="Test F1 (%)", title=approach_name(approach))
        if series:
            ax.legend(handles=handles, fontsize=7, title="continual pretraining", title_fontsize=7)
    fig.tight_layout()
    return _save(fig, path)


def cost_vs_f1(cells: Sequence[Cell], path: Path) -> Path:
    """Training time (fine-tuning + the continual pretraining behind it, seconds) vs test F1."""
    fig = Figure(figsize=(6.4, 4.8))
    ax = fig.add_subplot()
    xs = []
    for cell in (c for c in cells if c.ok):
        seconds, f1 = cell.summary(total_seconds).mean, _mean(cell, "test", "f1")[0]
        if seconds is None or f1 is None:
            continue
        xs.append(seconds)
        ax.plot(seconds, f1, marker=_marker(cell.key.approach), color=_color(cell.key.model), linestyle="")
        _annotate(ax, _tag(cell), seconds, f1)
    _log_x_if_wide(ax, xs)
    ax.set(ylim=(0, 100), xlabel="Training time (s, incl. continual pretraining)", ylabel="Test F1 (%)")
    ax.set_title("Cost vs test F1")
    _legend(ax, cells)
    fig.tight_layout()
    return _save(fig, path)


def _decision_points(scores: Sequence[CellScores], x_of) -> list[tuple[Cell, float, float, float, float]]:
    """(cell, x, F1, F1 - interval low, interval high - F1) in percent, for cells with both numbers."""
    points = []
    for score in scores:
        cell = score.cell
        x, f1 = cell.summary(x_of).mean, score.summaries["f1"].mean
        if not cell.ok or x is None or f1 is None:
            continue
        interval = score.interval("f1")
        low, high = (f1, f1) if interval is None else (interval.low, interval.high)
        points.append((cell, x, 100 * f1, 100 * max(0.0, f1 - low), 100 * max(0.0, high - f1)))
    return points


def _free(cell: Cell) -> bool:
    return cell.key.approach == "seq2seq" and decoding(cell.key) == "free"


def _corpus_color(corpus: str) -> str:
    return f"C{rank(corpus, CORPUS_ORDER)[0] % 10}"


def decision(scores: Sequence[CellScores], path: Path) -> Path:
    """The deployment view: test F1 (error bars: 95% bootstrap interval over documents) against training cost
    (minutes, continual pretraining included) and inference speed (test documents/s), a marker per approach
    and a colour per corpus; a log axis where values span more than 20x."""
    fig = Figure(figsize=(10.4, 4.6))
    axes = fig.subplots(1, 2, sharey=True)
    panels = (
        (total_minutes, "Training cost (min, incl. continual pretraining)"),
        (metric("inference", "documents_per_s"), "Inference speed (test documents/s)"),
    )
    for ax, (x_of, label) in zip(axes, panels, strict=True):
        points = _decision_points(scores, x_of)
        for cell, x, f1, below, above in points:
            ax.errorbar(
                x,
                f1,
                yerr=[[below], [above]],
                marker=_marker(cell.key.approach),
                color=_corpus_color(cell.key.corpus),
                mfc="none" if _free(cell) else None,  # hollow: seq2seq with free decoding
                linestyle="",
                capsize=2,
            )
            _annotate(ax, _tag(cell), x, f1)
        _log_x_if_wide(ax, [x for _, x, *_ in points])
        ax.set(xlabel=label, ylim=(0, 100))
    axes[0].set_ylabel("Test F1 (%), 95% interval over documents")
    cells = [score.cell for score in scores]
    corpora = sorted({c.key.corpus for c in cells}, key=lambda c: rank(c, CORPUS_ORDER))
    handles = _approach_handles(cells)
    handles += [
        Patch(color=_corpus_color(c), label=CORPUS_SHORT.get(c, c) or "not continued") for c in corpora
    ]
    if any(_free(cell) for cell in cells):
        handles.append(
            Line2D([], [], marker="s", mfc="none", color="0.3", linestyle="", label="seq2seq, free decoding")
        )
    if handles:
        axes[1].legend(handles=handles, fontsize=7, loc="best")
    fig.suptitle("Accuracy against cost, per approach")
    fig.tight_layout()
    return _save(fig, path)


def write_plots(cells: Sequence[Cell], out: Path, scores: Sequence[CellScores] = ()) -> list[Path]:
    """All report figures into `out` (the decision view when `scores` are given); returns their paths."""
    written = [
        precision_recall(cells, out / "precision_recall.png"),
        f1_by_model_corpus(cells, out / "f1_by_model_corpus.png"),
        cost_vs_f1(cells, out / "cost_vs_f1.png"),
    ]
    if scores:
        written.append(decision(scores, out / "decision.png"))
    return written

"""The error page as one HTML string: per-run scores and error categories (counts linking to their examples),
then every document with its gold and predicted mentions marked, runs side by side. All text is escaped."""

from __future__ import annotations

from collections import Counter
from html import escape

from clinical_ner.analysis.error_assets import SCRIPT, stylesheet
from clinical_ner.analysis.error_marks import marked_html
from clinical_ner.analysis.error_runs import RunErrors
from clinical_ner.data.types import Document
from clinical_ner.metrics.error_categories import (
    BOTH,
    CATEGORIES,
    EXACT,
    GOLD,
    IGNORED,
    LABELS,
    PREDICTED,
    Outcome,
    totals,
)

CONTEXT = 40  # characters of text shown either side of an example
# The rows of a counts table: (category, side); exact matches are TPs, the error categories have two sides.
ROWS = [(EXACT, BOTH)] + [
    (category, side)
    for category in CATEGORIES[1:]
    for side in (PREDICTED, GOLD)
    if (category, side) not in (("spurious", GOLD), ("missed", PREDICTED))
]
SIDE_NAMES = {BOTH: "TP", PREDICTED: "FP (predicted)", GOLD: "FN (gold)"}
# What each category means, under the counts table.
MEANINGS = (
    "wrong type: same offsets, another type; boundary: overlaps a mention of its type; overlap + wrong type: "
    "overlaps only mentions of other types; spurious / missed: overlaps nothing on the other side. Each FP and FN "
    "of the scorer is in exactly one category; a wrong type or boundary error is usually one FP and one FN."
)
SCORER_KEYS = {BOTH: "tp", PREDICTED: "fp", GOLD: "fn"}


def _pct(value: float) -> str:
    return f"{100 * value:.2f}"


def _type_table(run: RunErrors) -> str:
    rows = [(label, counts) for label, counts in run.scores.per_type.items()]
    rows.append(("ALL (micro)", run.scores.to_dict()))
    lines = ["<table><tr><th>type</th><th>P</th><th>R</th><th>F1</th><th>TP</th><th>FP</th><th>FN</th></tr>"]
    for label, c in rows:
        cells = "".join(f"<td>{_pct(c[k])}</td>" for k in ("precision", "recall", "f1"))
        cells += "".join(f"<td>{c[k]}</td>" for k in ("tp", "fp", "fn"))
        lines.append(f"<tr><td>{escape(label)}</td>{cells}</tr>")
    return "".join(lines) + "</table>"


def _count_cell(index: int, category: str, side: str, label: str, count: int) -> str:
    target = "#docs" if category == EXACT else f"#ex-{index}-{category}"
    link = (
        f'<a href="{target}" data-go-c="{category}" data-go-t="{escape(label)}">{count}</a>' if count else "0"
    )
    return (
        f'<td data-r="{index}" data-c="{category}" data-s="{side}" data-t="{escape(label)}" data-n="{count}">'
        f"{link}</td>"
    )


def _by_type_table(index: int, run: RunErrors, types: list[str]) -> str:
    """One run's category counts per entity type (each linking to its examples of that type)."""
    by_type = Counter(
        (o.category, o.side, o.type) for doc in run.outcomes.values() for o in doc if o.category != IGNORED
    )
    head = "".join(f"<th>{escape(t)}</th>" for t in types)
    lines = [f"<table><tr><th>category</th><th>side</th>{head}</tr>"]
    for category, side in ROWS:
        cells = "".join(_count_cell(index, category, side, t, by_type[(category, side, t)]) for t in types)
        lines.append(_row_head(category, side) + f"{cells}</tr>")
    return "".join(lines) + "</table>"


def _row_head(category: str, side: str) -> str:
    return f'<tr><td class="k-{category}">{LABELS[category]}</td><td class="side">{SIDE_NAMES[side]}</td>'


def _compare_table(runs: list[RunErrors]) -> str:
    """Category counts, one column per run; the totals are checked against each run's scorer TP/FP/FN."""
    head = "".join(f'<th data-run="{i}">run {i + 1}</th>' for i in range(len(runs)))
    lines = [f"<table><tr><th>category</th><th>side</th>{head}</tr>"]
    counts = [run.counts for run in runs]
    for category, side in ROWS:
        cells = "".join(
            _count_cell(i, category, side, "", c[category].get(side, 0)) for i, c in enumerate(counts)
        )
        lines.append(_row_head(category, side) + f"{cells}</tr>")
    for side, key in SCORER_KEYS.items():  # the category counts add up to the scorer's TP, FP and FN
        cells = []
        for index, (run, c) in enumerate(zip(runs, counts, strict=True)):
            total, scorer = totals(c)[side], getattr(run.scores, key)
            verdict = (
                '<span class="ok">✓</span>' if total == scorer else f'<span class="bad">≠ {scorer}</span>'
            )
            cells.append(f'<td data-run="{index}">{total} {verdict}</td>')
        lines.append(
            f'<tr class="total"><td>total {key.upper()}</td><td class="side">= scorer</td>{"".join(cells)}</tr>'
        )
    return "".join(lines) + "</table>"


def _run_summary(index: int, run: RunErrors, types: list[str]) -> str:
    recorded = run.recorded.get("f1")
    note = f"; results.json F1 {_pct(recorded)}" if isinstance(recorded, int | float) else ""
    return (
        f'<section class="runsum" data-run="{index}"><h3>run {index + 1}: {escape(run.label)}</h3>'
        f'<div class="note">{escape(str(run.folder))}: {run.scores.documents} documents scored{note}</div>'
        f"{_type_table(run)}<details><summary>error categories by type</summary>"
        f"{_by_type_table(index, run, types)}</details></section>"
    )


def _snippet(text: str, start: int, end: int, outcome: Outcome) -> str:
    left = text[max(0, start - CONTEXT) : start].replace("\n", " ")
    right = text[end : end + CONTEXT].replace("\n", " ")
    mention = escape(text[start:end])
    return (
        f'<q>…{escape(left)}<span class="x s-{outcome.side} c-{outcome.category}">{mention}</span>'
        f"{escape(right)}…</q>"
    )


def _example(doc_index: int, doc: Document, outcome: Outcome) -> str:
    where = f"{outcome.start}-{outcome.end}"
    line = (
        f'<li data-t="{escape(outcome.type)}"><a href="#d{doc_index}">{escape(doc.id)}</a> '
        f"{SIDE_NAMES[outcome.side]} {escape(outcome.type)} {where} {_snippet(doc.text, outcome.start, outcome.end, outcome)}"
    )
    if outcome.partner is not None:
        label, start, end = outcome.partner
        other = "gold" if outcome.side == PREDICTED else "predicted"
        line += f" ↔ {other} {escape(label)} {start}-{end} «{escape(doc.text[start:end])}»"
    return line + "</li>"


def _examples(index: int, run: RunErrors, docs: list[Document]) -> str:
    positions = {doc.id: i for i, doc in enumerate(docs)}
    by_category: dict[str, list[str]] = {category: [] for category in CATEGORIES[1:]}
    for doc in docs:
        for outcome in run.outcomes.get(doc.id, []):
            if outcome.category in by_category:
                by_category[outcome.category].append(_example(positions[doc.id], doc, outcome))
    parts = []
    for category, items in by_category.items():
        parts.append(
            f'<details class="ex" id="ex-{index}-{category}" data-run="{index}" data-c="{category}">'
            f'<summary><span class="k-{category}">{LABELS[category]}</span> ({len(items)})</summary>'
            f"<ol>{''.join(items)}</ol></details>"
        )
    return f'<section data-run="{index}"><h3>run {index + 1}</h3>{"".join(parts)}</section>'


def _document(doc_index: int, doc: Document, runs: list[RunErrors]) -> str:
    columns = []
    for index, run in enumerate(runs):
        outcomes = run.outcomes.get(doc.id)
        head = f'<div class="rh">run {index + 1}: {escape(run.label)}'
        if outcomes is None:
            body = '<p class="note">no prediction file for this document: not scored</p>'
        else:
            tp, fp, fn = run.scores.per_document.get(doc.id, [0, 0, 0])
            head += f" · TP {tp} FP {fp} FN {fn}"
            body = f'<div class="text">{marked_html(doc.text, outcomes)}</div>'
        columns.append(f'<div class="col" data-run="{index}">{head}</div>{body}</div>')
    return (
        f'<article class="doc" id="d{doc_index}" data-doc="{escape(doc.id)}"><h3>{escape(doc.id)}</h3>'
        f'<div class="cols">{"".join(columns)}</div></article>'
    )


def _filters(runs: list[RunErrors], types: list[str]) -> str:
    boxes = "".join(
        f'<label><input type="checkbox" class="runbox" data-run="{i}" checked> run {i + 1}</label>'
        for i in range(len(runs))
    )
    type_options = "".join(f'<option value="{escape(t)}">{escape(t)}</option>' for t in types)
    cat_options = "".join(f'<option value="{c}">{LABELS[c]}</option>' for c in CATEGORIES)
    return (
        f'<nav id="filters">{boxes}'
        f'<label>type <select id="f-type"><option value="">all</option>{type_options}</select></label>'
        f'<label>category <select id="f-cat"><option value="">all</option>{cat_options}</select></label>'
        '<label><input type="checkbox" id="f-errors"> documents with errors only</label>'
        '<label>document <input type="search" id="f-doc" placeholder="id contains…"></label>'
        '<span id="f-shown"></span></nav>'
    )


def _legend() -> str:
    def marks(side: str, categories, text: str = "") -> str:
        return " ".join(f'<span class="m s-{side} c-{c}">{text or LABELS[c]}</span>' for c in categories)

    return (
        f'<p class="legend">Predicted mentions are filled: {marks(PREDICTED, CATEGORIES[1:5])}; gold mentions '
        f"underlined: {marks(GOLD, (*CATEGORIES[1:4], CATEGORIES[5]))}; both: {marks(BOTH, CATEGORIES[:1])}; "
        f"not scored by the rule: {marks(PREDICTED, (IGNORED,), 'predicted')} {marks(GOLD, (IGNORED,), 'gold')}. Hover a mention for its offsets and the mention it was judged against.</p>"
    )


def render_page(docs: list[Document], runs: list[RunErrors], split: str, rule: str) -> str:
    """The whole page: header, filters, per-run summaries, examples per category, documents side by side."""
    scored_types = sorted({t for run in runs for t in run.scores.per_type})
    types = sorted(set(scored_types) | {s.type for d in docs for s in d.spans})  # the filter's: ignored too
    scored = {doc_id for run in runs for doc_id in run.outcomes}
    shown = [doc for doc in docs if doc.id in scored]  # what no run scored has nothing to show
    title = f"Errors on {split}: " + " vs ".join(run.label for run in runs)
    summaries = "".join(_run_summary(i, run, scored_types) for i, run in enumerate(runs))
    examples = "".join(_examples(i, run, shown) for i, run in enumerate(runs))
    documents = "".join(_document(i, doc, runs) for i, doc in enumerate(shown))
    rule_note = "UNCLEAR ignored on both sides" if rule == "codalab" else "every type scored"
    return (
        '<!DOCTYPE html><html lang="es"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width,initial-scale=1">'
        f"<title>{escape(title)}</title><style>{stylesheet()}</style></head><body>"
        f"<header><h1>{escape(title)}</h1>"
        '<p class="privacy">This page holds clinical text: keep it on this machine (do not upload or share it).</p>'
        f"<p>Split <b>{escape(split)}</b>, rule <b>{escape(rule)}</b> ({rule_note}), strict span match; "
        f"{len(shown)} documents. Every TP, FP and FN of the scorer is in exactly one category.</p>"
        f"{_legend()}</header>{_filters(runs, types)}<main>"
        f'<h2>Error categories</h2>{_compare_table(runs)}<p class="note">{MEANINGS}</p>'
        f'<h2>Scores</h2><div class="sums">{summaries}</div>'
        f'<h2 id="examples">Examples per category</h2><div class="sums">{examples}</div>'
        f'<h2 id="docs">Documents</h2>{documents}</main><script>{SCRIPT}</script></body></html>'
    )

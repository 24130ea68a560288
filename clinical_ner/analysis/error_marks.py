"""A document's text as HTML with each mention marked: one `<span class="m ...">` per mention, split into
fragments where mentions cross (nested ones nest). The first fragment of a mention carries its category; later
fragments add class `mc`, so counting `.m:not(.mc)` counts mentions. Every piece of text is HTML-escaped."""

from __future__ import annotations

from collections import defaultdict
from html import escape

from clinical_ner.metrics.error_categories import LABELS, Outcome


def mark_title(outcome: Outcome) -> str:
    """The tooltip of a mark: side, type, offsets, category and the partner it was judged against (no text)."""
    side = {"tp": "gold = predicted", "fp": "predicted", "fn": "gold"}[outcome.side]
    title = f"{side} {outcome.type} {outcome.start}-{outcome.end}: {LABELS[outcome.category]}"
    if outcome.partner is not None:
        other = "gold" if outcome.side == "fp" else "predicted"
        label, start, end = outcome.partner
        title += f" ({other} {label} {start}-{end})"
    return title


def _open(outcome: Outcome, first: bool) -> str:
    classes = f"m s-{outcome.side} c-{outcome.category}" + ("" if first else " mc")
    attributes = f'class="{classes}" data-c="{outcome.category}" data-t="{escape(outcome.type)}"'
    if first:
        attributes += f' title="{escape(mark_title(outcome))}"'
    return f"<span {attributes}>"


def marked_html(text: str, outcomes: list[Outcome]) -> str:
    """`text` escaped, with every outcome marked; offsets outside the text are clamped, and an empty or inverted
    span becomes an empty mark at its start, so every mention the scorer counted is on the page."""
    size = len(text)
    spans = [(min(max(o.start, 0), size), min(max(o.end, 0), size)) for o in outcomes]
    starts: dict[int, list[int]] = defaultdict(list)
    for index, (start, _) in enumerate(spans):
        starts[start].append(index)
    for (
        indices
    ) in starts.values():  # longer first, so a shorter mention starting at the same place nests inside
        indices.sort(key=lambda i: -spans[i][1])
    points = sorted({0, size, *(s for s, _ in spans), *(e for _, e in spans)})
    out: list[str] = []
    stack: list[int] = []
    for position, following in zip(points, [*points[1:], None], strict=True):
        ending = {i for i in stack if spans[i][1] <= position}
        if ending:
            reopen = []
            while ending & set(stack):
                index = stack.pop()
                out.append("</span>")
                if index not in ending:
                    reopen.append(index)
            for index in reversed(reopen):  # crossing mentions: closed to end the inner one, opened again
                out.append(_open(outcomes[index], first=False))
                stack.append(index)
        for index in starts.get(position, []):
            out.append(_open(outcomes[index], first=True))
            if spans[index][1] <= position:  # empty span: a mark with no text
                out.append("</span>")
            else:
                stack.append(index)
        if following is not None:
            out.append(escape(text[position:following]))
    out.extend("</span>" for _ in stack)
    return "".join(out)

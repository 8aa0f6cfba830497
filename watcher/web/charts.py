"""Server-rendered SVG bar charts: no script, no font, no style attribute.

`bar_chart(points, title=..., width=..., height=...)` draws (label, value) pairs as columns
(the findings per day) or, with `horizontal=True`, as rows with their labels on the left
(the findings per source). The result is `markupsafe.Markup`, inserted as it is by jinja2's
autoescaping, so every text in it is escaped here: labels are source names or dates today,
but a chart must stay text whatever it is given (`<script>` in a label is shown, not run).

Accessible without seeing it: the `<svg>` is `role="img"` with an `aria-label` and a `<title>`
and `<desc>` (the range, the total, the highest value) it points to with `aria-labelledby`;
each bar carries a `<title>` with its label and value (a tooltip in every browser). Colours
come from CSS classes (`chart`, `bar`, `axis`, `label`, `value`) with presentation attributes
as defaults, which a strict Content-Security-Policy allows (it refuses `style="..."`).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

from markupsafe import Markup, escape

__all__ = ["bar_chart"]

LABEL_CHARS = 28        # a longer label is cut (with an ellipsis) on the chart, whole in its tooltip
FONT = 11               # px, the labels' size (the layout's unit)
BAR_FILL = "#3b6ea5"


def _number(value: float) -> str:
    """A coordinate: at most one decimal, no trailing zero."""
    return f"{value:.1f}".rstrip("0").rstrip(".")


def _short(label: str) -> str:
    return label if len(label) <= LABEL_CHARS else label[: LABEL_CHARS - 1] + "\u2026"


def _summary(points: Sequence[tuple[str, int]]) -> str:
    """The chart in one sentence, for screen readers and the `<desc>`."""
    if not points:
        return "No data."
    total = sum(value for _, value in points)
    if total == 0:
        return f"{len(points):,} bars, all zero ({points[0][0]} to {points[-1][0]})."
    label, top = max(points, key=lambda point: point[1])
    return (f"{len(points):,} bars from {points[0][0]} to {points[-1][0]}; total {total:,}; "
            f"highest {top:,} ({label}).")


def bar_chart(points: Sequence[tuple[str, int]], *, title: str, width: int = 640, height: int = 220,
              horizontal: bool = False, desc: str | None = None) -> Markup:
    """An SVG bar chart of `points` (label, value >= 0), `width` x `height` pixels.

    Columns by default, each bar's height proportional to its value (the largest fills the
    plot; zero draws a zero-height bar, still there with its tooltip); `horizontal`: one row
    per point, bar lengths proportional. `desc` replaces the generated summary. Every text is
    escaped (markupsafe), so the result is safe to insert as it is.
    """
    values = [(str(label), max(int(value), 0)) for label, value in points]
    key = hashlib.sha256(f"{title}\0{values!r}".encode()).hexdigest()[:10]
    title_id, desc_id = f"chart-{key}-title", f"chart-{key}-desc"
    summary = desc if desc is not None else _summary(values)
    bars = _rows(values, width, height) if horizontal else _columns(values, width, height)
    head = (f'<svg xmlns="http://www.w3.org/2000/svg" class="chart" role="img" width="{int(width)}" '
            f'height="{int(height)}" viewBox="0 0 {int(width)} {int(height)}" '
            f'aria-label="{escape(title)}" aria-labelledby="{title_id} {desc_id}">'
            f'<title id="{title_id}">{escape(title)}</title><desc id="{desc_id}">{escape(summary)}</desc>')
    return Markup(head + "".join(bars) + "</svg>")


def _bar(x: float, y: float, w: float, h: float, label: str, value: int) -> str:
    return (f'<rect class="bar" x="{_number(x)}" y="{_number(y)}" width="{_number(w)}" height="{_number(h)}" '
            f'fill="{BAR_FILL}" data-value="{value}"><title>{escape(label)}: {value:,}</title></rect>')


def _text(x: float, y: float, text: str, css: str, anchor: str = "middle") -> str:
    return (f'<text class="{css}" x="{_number(x)}" y="{_number(y)}" text-anchor="{anchor}" '
            f'font-size="{FONT}">{escape(text)}</text>')


def _columns(values: list[tuple[str, int]], width: int, height: int) -> list[str]:
    """Vertical bars, labels under them (every n-th when they would overlap), the scale's top
    value on the left."""
    top = max((value for _, value in values), default=0)
    left, bottom, head = FONT * 4, FONT * 2 + 4, FONT
    plot_w, plot_h = max(width - left - 4, 1), max(height - bottom - head, 1)
    base = head + plot_h
    parts = [f'<line class="axis" x1="{left}" y1="{_number(base)}" x2="{_number(left + plot_w)}" '
             f'y2="{_number(base)}" stroke="#888"/>',
             _text(left - 4, head + FONT / 2, f"{top:,}", "value", "end"),
             _text(left - 4, base, "0", "value", "end")]
    if not values:
        return parts
    slot = plot_w / len(values)
    longest = max(len(_short(label)) for label, _ in values)
    every = max(1, -(-int(longest * FONT * 0.6 + 6) // max(int(slot), 1)))   # labels that fit side by side
    for n, (label, value) in enumerate(values):
        h = plot_h * value / top if top else 0.0
        x = left + n * slot
        parts.append(_bar(x + slot * 0.1, base - h, slot * 0.8, h, label, value))
        if n % every == 0:
            parts.append(_text(x + slot / 2, base + FONT + 4, _short(label), "label"))
    return parts


def _rows(values: list[tuple[str, int]], width: int, height: int) -> list[str]:
    """Horizontal bars, one row per point: its label on the left, its value after the bar."""
    top = max((value for _, value in values), default=0)
    left = min(max((len(_short(label)) for label, _ in values), default=4) * FONT * 0.6 + 8, width / 2)
    right = FONT * 5
    plot_w = max(width - left - right, 1)
    if not values:
        return []
    slot = height / len(values)
    parts = []
    for n, (label, value) in enumerate(values):
        w = plot_w * value / top if top else 0.0
        y = n * slot
        parts.append(_text(left - 6, y + slot / 2 + FONT / 3, _short(label), "label", "end"))
        parts.append(_bar(left, y + slot * 0.15, w, slot * 0.7, label, value))
        parts.append(_text(left + w + 4, y + slot / 2 + FONT / 3, f"{value:,}", "value", "start"))
    return parts

"""SVG charts drawn on the server with pygal, inlined in the page: nothing is loaded from elsewhere.

pygal puts a ``<script>`` with its settings into every chart; it is cut out of the tree before the
chart is written, so that the page runs no inline script (its CSP forbids them). Text inside the
SVG is written by an XML serialiser, so labels from upstream arrive escaped.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import pygal
from markupsafe import Markup
from pygal.style import Style

STYLE = Style(
    background="transparent", plot_background="transparent", foreground="#333", foreground_strong="#111",
    foreground_subtle="#ccc", opacity=".85", opacity_hover=".95", transition="0ms",
    colors=("#2f6fb0", "#e07b39", "#3a9a5b", "#c0392b", "#8e6bb8", "#7f8c8d", "#d4a017"),
    font_family="system-ui, 'Noto Sans CJK SC', 'Microsoft YaHei', sans-serif",
    label_font_size=12, major_label_font_size=12, value_font_size=11, legend_font_size=12,
    tooltip_font_size=12, title_font_size=14,
)


def _no_scripts(root: Any) -> Any:
    for parent in list(root.iter()):
        for child in list(parent):
            if isinstance(child.tag, str) and child.tag.rsplit("}", 1)[-1] == "script":
                parent.remove(child)
    return root


def _config(width: int, height: int, **extra: Any) -> dict[str, Any]:
    return {"style": STYLE, "width": width, "height": height, "js": [], "disable_xml_declaration": True,
            "explicit_size": False, "print_values": True, "legend_at_bottom": True,
            "truncate_label": -1, "truncate_legend": -1, **extra}


def _render(chart: Any) -> Markup:
    chart.add_xml_filter(_no_scripts)
    return Markup(chart.render(is_unicode=True))  # noqa: S704 - serialised by pygal's XML writer, see above


def bars(labels: Sequence[str], series: Sequence[tuple[str, Sequence[float | None]]], *, width: int = 480,
         height: int = 280, horizontal: bool = False, percent: bool = False, legend: bool = True,
         stacked: bool = False) -> Markup:
    if stacked:
        kind = pygal.HorizontalStackedBar if horizontal else pygal.StackedBar
    else:
        kind = pygal.HorizontalBar if horizontal else pygal.Bar
    extra: dict[str, Any] = {"show_legend": legend and len(series) > 1}
    if percent:
        extra.update(value_formatter=lambda v: f"{v:.1f}%", range=(0, 100))
    else:
        # Counts: whole-number ticks only (of the stacks' totals when stacked).
        totals = [sum(v or 0 for v in column) for column in zip(*(values for _, values in series))] if stacked else []
        top = max(totals or [v for _, values in series for v in values if v is not None] or [1])
        step = max(1, math.ceil(top / 5))
        extra.update(value_formatter=lambda v: f"{v:g}", y_labels=list(range(0, int(top) + step, step)))
    chart = kind(**_config(width, height, **extra))
    chart.x_labels = list(labels)
    for name, values in series:
        chart.add(name, list(values))
    return _render(chart)


def lines(labels: Sequence[str], series: Sequence[tuple[str, Sequence[float | None], bool]], *,
          width: int = 480, height: int = 280) -> Markup:
    """Lines over ``labels``; each series is ``(name, values, on_secondary_axis)``."""
    chart = pygal.Line(**_config(width, height, value_formatter=lambda v: f"{v:.2f}", allow_interruptions=True,
                                 show_legend=True, dots_size=4))
    chart.x_labels = list(labels)
    for name, values, secondary in series:
        chart.add(name, list(values), secondary=secondary)
    return _render(chart)

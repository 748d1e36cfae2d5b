"""Geometry of the feedback page's bar charts, drawn as SVG by the server.

Python works out every rectangle and label position; the template only
writes them out (autoescaped), so the page needs no chart library and no
script, and a model name with markup in it is just text.
"""

from __future__ import annotations

from dataclasses import dataclass, field

RATINGS = ("positive", "negative")


@dataclass
class Bar:
    rating: str
    value: int
    x: float
    y: float
    width: float
    height: float


@dataclass
class Group:
    label: str
    x: float
    bars: list[Bar]


@dataclass
class Chart:
    width: int
    height: int
    plot_bottom: float
    top_value: int
    groups: list[Group] = field(default_factory=list)
    ticks: list[tuple[float, int]] = field(default_factory=list)


def nice_top(value: int) -> int:
    """The smallest of 1, 2, 5, 10, 20, 50... at or above ``value``: the top of
    the value axis."""
    top = 1
    while True:
        for step in (1, 2, 5):
            if top * step >= value:
                return top * step
        top *= 10


def grouped_bars(counts: dict[str, dict[str, int]], width: int = 640, height: int = 240) -> Chart:
    """A positive and a negative bar for each label, in the order given."""
    left, right, top, bottom = 40.0, 10.0, 16.0, 48.0
    plot_h = height - top - bottom
    plot_bottom = height - bottom
    peak = max((c.get(r, 0) for c in counts.values() for r in RATINGS), default=0)
    top_value = nice_top(max(peak, 1))
    chart = Chart(width, height, plot_bottom, top_value)
    chart.ticks = [(plot_bottom - plot_h * v / top_value, v) for v in sorted({0, top_value // 2, top_value})]
    if not counts:
        return chart
    slot = (width - left - right) / len(counts)
    bar_w = min(28.0, slot * 0.35)
    for index, (label, by_rating) in enumerate(counts.items()):
        x = left + slot * index + slot / 2
        bars = []
        for offset, rating in zip((-bar_w, 0.0), RATINGS):
            value = int(by_rating.get(rating, 0))
            h = plot_h * value / top_value
            bars.append(Bar(rating, value, x + offset, plot_bottom - h, bar_w, h))
        chart.groups.append(Group(label, x, bars))
    return chart

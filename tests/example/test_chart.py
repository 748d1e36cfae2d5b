"""The feedback chart's geometry."""

from __future__ import annotations

import pytest

from example_app.chart import grouped_bars, nice_top


@pytest.mark.parametrize(("value", "top"), [(1, 1), (2, 2), (3, 5), (7, 10), (11, 20), (120, 200)])
def test_nice_top(value, top):
    assert nice_top(value) == top


def test_bars_scale_to_the_top_value_and_sit_on_the_axis():
    chart = grouped_bars({"a": {"positive": 4, "negative": 1}, "b": {"positive": 0, "negative": 5}})
    assert chart.top_value == 5
    assert [g.label for g in chart.groups] == ["a", "b"]
    heights = {(g.label, b.rating): b.height for g in chart.groups for b in g.bars}
    full = heights[("b", "negative")]
    assert heights[("a", "positive")] == pytest.approx(full * 4 / 5)
    assert heights[("b", "positive")] == 0
    for group in chart.groups:
        for bar in group.bars:
            assert bar.y + bar.height == pytest.approx(chart.plot_bottom)
    assert chart.groups[0].x < chart.groups[1].x
    assert [v for _, v in chart.ticks] == [0, 2, 5]


def test_empty_chart_has_no_groups():
    assert grouped_bars({}).groups == []

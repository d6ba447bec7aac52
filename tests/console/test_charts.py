"""Charts are SVG drawn here, with no script and with upstream labels escaped."""

from __future__ import annotations

from console import charts


def test_a_chart_carries_no_script_and_escapes_its_labels() -> None:
    svg = charts.bars(["<img src=x onerror=alert(1)>", "B"], [("<script>s</script>", [3, 1]), ("t", [1, None])])
    assert svg.startswith("<svg") and "<script" not in svg.lower() and "<img" not in svg
    assert "&lt;img src=x onerror=alert(1)&gt;" in svg
    assert "http://" not in svg.replace('xmlns="http://www.w3.org/2000/svg"', "").split("-->")[-1]
    line = charts.lines(["2026-01", "2026-02"], [("avg", [4.2, None], True), ("rate", [50.0, 75.0], False)])
    assert "<script" not in line.lower()


def test_counts_get_whole_number_ticks() -> None:
    svg = charts.bars(["a"], [("n", [2])])
    assert ">0.5<" not in svg and ">1<" in svg

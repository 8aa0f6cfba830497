"""The console's SVG charts (watcher.web.charts): parsed back as XML, so what a browser would
build is what is checked: hostile labels stay text, bars follow their values, the chart can be
read without seeing it."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import jinja2
import pytest
from markupsafe import Markup

from watcher.web.charts import bar_chart

SVG = "{http://www.w3.org/2000/svg}"
HOSTILE = ['<script>alert(1)</script>', '"><img src=x onerror=alert(1)>', "javascript:alert(1)", "a & b", "x' y=\"1"]


def _parse(chart: Markup) -> ET.Element:
    return ET.fromstring(str(chart))


def _bars(root: ET.Element) -> list[ET.Element]:
    return root.findall(f"{SVG}rect[@class='bar']")


def test_hostile_labels_and_titles_stay_text() -> None:
    chart = bar_chart([(label, n + 1) for n, label in enumerate(HOSTILE)], title='<script>alert("t")</script>',
                      width=900)
    root = _parse(chart)
    tags = {element.tag for element in root.iter()}
    assert tags <= {f"{SVG}{name}" for name in ("svg", "title", "desc", "rect", "text", "line")}
    assert set(root.attrib) == {"class", "role", "width", "height", "viewBox", "aria-label", "aria-labelledby"}
    assert all(set(rect.attrib) == {"class", "x", "y", "width", "height", "fill", "data-value"} for rect in _bars(root))
    assert root.attrib["aria-label"] == '<script>alert("t")</script>'
    assert [rect.find(f"{SVG}title").text for rect in _bars(root)] == [f"{label}: {n + 1}"
                                                                       for n, label in enumerate(HOSTILE)]
    labels = [t.text for t in root.findall(f"{SVG}text[@class='label']")]
    assert "<script>alert(1)</script>" in labels
    assert "<script" not in str(chart) and "<img" not in str(chart)


def test_bar_heights_follow_the_values() -> None:
    values = [("a", 0), ("b", 5), ("c", 10), ("d", 20), ("e", 15)]
    rects = _bars(_parse(bar_chart(values, title="per day", width=500, height=300)))
    heights = [float(rect.attrib["height"]) for rect in rects]
    assert [int(rect.attrib["data-value"]) for rect in rects] == [v for _, v in values]
    assert heights[0] == 0 and heights[3] == max(heights) > 200
    for (_, value), height in zip(values, heights, strict=True):
        assert height == pytest.approx(heights[3] * value / 20, abs=0.1)
    bottoms = {round(float(rect.attrib["y"]) + float(rect.attrib["height"]), 1) for rect in rects}
    assert len(bottoms) == 1                                  # every bar stands on the axis
    xs = [float(rect.attrib["x"]) for rect in rects]
    assert xs == sorted(xs)                                   # in the given order


def test_horizontal_bar_lengths_follow_the_values() -> None:
    values = [("src-a", 40), ("src-b", 10), ("a very long source name that goes on and on", 20)]
    root = _parse(bar_chart(values, title="per source", horizontal=True, width=600, height=90))
    widths = [float(rect.attrib["width"]) for rect in _bars(root)]
    assert widths[1] == pytest.approx(widths[0] / 4, abs=0.1) and widths[2] == pytest.approx(widths[0] / 2, abs=0.1)
    ys = [float(rect.attrib["y"]) for rect in _bars(root)]
    assert ys == sorted(ys)
    labels = [t.text or "" for t in root.findall(f"{SVG}text[@class='label']")]
    assert labels[2].endswith("\u2026") and len(labels[2]) < len(values[2][0])     # cut on the chart...
    assert _bars(root)[2].find(f"{SVG}title").text == f"{values[2][0]}: 20"      # ...whole in its tooltip


def test_the_chart_can_be_read_without_seeing_it() -> None:
    root = _parse(bar_chart([("2026-12-01", 3), ("2026-12-02", 0), ("2026-12-03", 7)], title="Findings per day"))
    assert root.attrib["role"] == "img" and root.attrib["aria-label"] == "Findings per day"
    ids = root.attrib["aria-labelledby"].split()
    found = {element.attrib.get("id"): element for element in root.iter() if element.attrib.get("id")}
    assert [found[i].tag for i in ids] == [f"{SVG}title", f"{SVG}desc"]
    assert found[ids[0]].text == "Findings per day"
    assert found[ids[1]].text == "3 bars from 2026-12-01 to 2026-12-03; total 10; highest 7 (2026-12-03)."


def test_empty_and_all_zero_charts() -> None:
    empty = _parse(bar_chart([], title="nothing"))
    assert _bars(empty) == [] and empty.find(f"{SVG}desc").text == "No data."
    zeros = _parse(bar_chart([("a", 0), ("b", 0)], title="zeros"))
    assert [float(rect.attrib["height"]) for rect in _bars(zeros)] == [0.0, 0.0]
    assert zeros.find(f"{SVG}desc").text == "2 bars, all zero (a to b)."


def test_two_charts_on_one_page_have_their_own_ids() -> None:
    first = _parse(bar_chart([("a", 1)], title="one"))
    second = _parse(bar_chart([("a", 1)], title="two"))
    assert first.attrib["aria-labelledby"] != second.attrib["aria-labelledby"]


def test_a_template_inserts_the_chart_as_it_is() -> None:
    chart = bar_chart([("<b>", 1)], title="t")
    template = jinja2.Environment(autoescape=True).from_string("<div>{{ chart }}</div><p>{{ label }}</p>")
    html = template.render(chart=chart, label="<b>")
    assert html == f"<div>{chart}</div><p>&lt;b&gt;</p>"

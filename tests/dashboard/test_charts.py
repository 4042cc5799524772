"""`trading.charts`: well-formed SVG, points inside the box, escaped text, an empty state."""
import xml.etree.ElementTree as ET
from datetime import datetime, timedelta, timezone
from decimal import Decimal

import pytest

from trading import charts

NS = {"svg": "http://www.w3.org/2000/svg"}
T0 = datetime(2026, 1, 2, 3, 4, 5, tzinfo=timezone.utc)


def near(value: float):
    return pytest.approx(value, abs=0.01)  # coordinates are written with two decimals


def parse(svg: str) -> ET.Element:
    return ET.fromstring(svg)


def polyline_points(root: ET.Element) -> list[tuple[float, float]]:
    line = root.find("svg:polyline", NS)
    assert line is not None
    pairs = [pair.split(",") for pair in line.attrib["points"].split()]
    return [(float(x), float(y)) for x, y in pairs]


def plot_box(root: ET.Element) -> tuple[float, float, float, float]:
    frame = root.find("svg:rect", NS)
    assert frame is not None
    x, y = float(frame.attrib["x"]), float(frame.attrib["y"])
    return x, y, x + float(frame.attrib["width"]), y + float(frame.attrib["height"])


def test_points_scale_into_the_plot_box():
    points = [(T0, Decimal("-2")), (T0 + timedelta(minutes=1), Decimal("3")), (T0 + timedelta(minutes=3), Decimal("1.5"))]
    root = parse(charts.line_chart(points, 400, 160))
    assert root.tag == "{http://www.w3.org/2000/svg}svg"
    assert (root.get("width"), root.get("height"), root.get("viewBox")) == ("400", "160", "0 0 400 160")
    assert root.get("data-points") == "3"
    left, top, right, bottom = plot_box(root)
    coords = polyline_points(root)
    assert len(coords) == 3
    for x, y in coords:
        assert left <= x <= right and top <= y <= bottom
    # First point on the left edge, last on the right; the highest value at the top, the lowest at the bottom.
    assert coords[0][0] == near(left) and coords[-1][0] == near(right)
    assert coords[1][1] == near(top) and coords[0][1] == near(bottom)
    # Time is linear: one minute of three is a third of the width.
    assert coords[1][0] == near(left + (right - left) / 3)
    # The zero line sits between the lowest (-2) and highest (3) values, 3/5 of the way down.
    zero = root.find("svg:line", NS)
    assert float(zero.get("y1")) == near(top + (bottom - top) * 3 / 5)


def test_labels_show_the_exact_decimal_range():
    root = parse(charts.line_chart([(1, Decimal("0.000000011")), (2, Decimal("12.5"))], unit="USDT"))
    texts = [t.text for t in root.iter("{http://www.w3.org/2000/svg}text")]
    assert "12.5 USDT" in texts
    assert "0 USDT" in texts  # include_zero keeps zero as the bottom of the axis


def test_step_chart_draws_a_staircase():
    root = parse(charts.line_chart([(0, 0), (10, 5), (20, 2)], 300, 120, step=True))
    coords = polyline_points(root)
    assert len(coords) == 5
    assert coords[1] == (coords[2][0], coords[0][1])  # horizontal, then vertical


def test_single_point_and_flat_series_stay_inside():
    for points in ([(T0, Decimal("7"))], [(1, Decimal("4")), (2, Decimal("4"))]):
        root = parse(charts.line_chart(points, 300, 120, include_zero=False))
        left, top, right, bottom = plot_box(root)
        for x, y in polyline_points(root):
            assert left <= x <= right and top <= y <= bottom


def test_empty_data_renders_a_no_data_svg():
    root = parse(charts.line_chart([], 300, 120, empty_text="no fills yet"))
    assert root.get("data-points") == "0"
    assert root.find("svg:polyline", NS) is None
    assert [t.text for t in root.iter("{http://www.w3.org/2000/svg}text")] == ["no fills yet"]


def test_text_is_escaped():
    hostile = '<script>alert("x")</script> & "quotes"'
    svg = charts.line_chart([(1, 1), (2, 2)], title=hostile, unit="<b>", empty_text=hostile)
    assert "<script>" not in svg and "<b>" not in svg
    root = parse(svg)
    assert root.get("aria-label") == hostile
    assert root.find("svg:title", NS).text == hostile
    assert "<script>" not in charts.line_chart([], empty_text=hostile)
    parse(charts.line_chart([], empty_text=hostile))


def test_bad_input_is_refused():
    with pytest.raises(TypeError):
        charts.line_chart([("yesterday", 1)])
    with pytest.raises(ValueError):
        charts.line_chart([(1, Decimal("NaN"))])
    with pytest.raises(ValueError):
        charts.line_chart([(1, 1)], width=20, height=20)


def test_downsample_keeps_the_ends():
    points = [(i, Decimal(i)) for i in range(1000)]
    kept = charts.downsample(points, 50)
    assert len(kept) == 50
    assert kept[0] == points[0] and kept[-1] == points[-1]
    assert [p[0] for p in kept] == sorted({p[0] for p in kept})
    assert charts.downsample(points[:10], 50) == points[:10]


def test_format_number_is_exact_and_compact():
    assert charts.format_number(Decimal("60000.000000000000000000")) == "60000"
    assert charts.format_number(Decimal("0.00083000")) == "0.00083"
    assert charts.format_number(Decimal("1E-8")) == "0.00000001"
    assert charts.format_number(Decimal("-0.000000001")) == "0"
    assert charts.format_number(Decimal("-12.50")) == "-12.5"


def test_the_plot_leaves_room_for_long_labels():
    short = parse(charts.line_chart([(1, Decimal("1")), (2, Decimal("2"))], 400, 160))
    long = parse(charts.line_chart([(1, Decimal("-0.049634")), (2, Decimal("1234567.125"))], 400, 160, unit="USDT"))
    assert plot_box(long)[0] > plot_box(short)[0]
    assert plot_box(long)[0] >= charts.LABEL_CHAR_WIDTH * len("1234567.125 USDT")
    labels = [t for t in long.iter("{http://www.w3.org/2000/svg}text") if t.get("text-anchor") == "end" and "USDT" in t.text]
    assert [t.text for t in labels] == ["1234567.125 USDT", "-0.049634 USDT"]
    assert all(float(t.get("x")) < plot_box(long)[0] for t in labels)

"""Server-side charts: small, self-contained inline SVG, so the admin needs no JavaScript and no
internet. Pure functions (no Django, no I/O); every piece of text is escaped, so the markup can
be put into a page as it is.

Values may be Decimals: they are turned into floats only to compute pixel positions, and labels
show the Decimal itself.
"""
from __future__ import annotations

import html
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime
from decimal import Decimal
from numbers import Real
from typing import cast

Number = Real | Decimal
X = datetime | Number
Point = tuple[X, Number]

# Room around the plot for the axis labels (the left margin grows with the longest value label).
MARGIN_LEFT = 40
LABEL_CHAR_WIDTH = 6.8  # pixels per character of an 11 px label, generously
MARGIN_RIGHT = 16
MARGIN_TOP = 22
MARGIN_BOTTOM = 24

LINE_COLOUR = "#417690"  # the admin's header blue: readable on light and dark backgrounds
UP_COLOUR = "#2e7d32"
DOWN_COLOUR = "#c62828"


def line_chart(
    points: Iterable[Point],
    width: int = 640,
    height: int = 200,
    *,
    title: str = "",
    unit: str = "",
    step: bool = False,
    include_zero: bool = True,
    empty_text: str = "no data",
    x_format: Callable[[X], str] | None = None,
) -> str:
    """An SVG line chart of `points` ((x, y) pairs; x a datetime or a number), scaled into a
    `width` x `height` box. `step` draws a staircase (for running totals that change at events);
    `include_zero` keeps the zero line in view. No points: a box that says `empty_text`."""
    if width < MARGIN_LEFT + MARGIN_RIGHT + 10 or height < MARGIN_TOP + MARGIN_BOTTOM + 10:
        raise ValueError(f"a chart needs at least {MARGIN_LEFT + MARGIN_RIGHT + 10}x{MARGIN_TOP + MARGIN_BOTTOM + 10} pixels")
    data = sorted(((x, y) for x, y in points), key=lambda p: _x_value(p[0]))
    label = title or "chart"
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="qm-chart" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" role="img" aria-label={_attr(label)} data-points="{len(data)}">',
        f"<title>{_text(label)}</title>",
    ]
    if title:
        parts.append(f'<text x="{MARGIN_RIGHT}" y="14" font-size="12" font-weight="bold" fill="currentColor">{_text(title)}</text>')
    left, top = MARGIN_LEFT, MARGIN_TOP
    right, bottom = width - MARGIN_RIGHT, height - MARGIN_BOTTOM
    if data:
        values = [_decimal(y) for _, y in data]
        low, high = min(values), max(values)
        if include_zero:
            low, high = min(low, Decimal(0)), max(high, Decimal(0))
        if low == high:
            pad = abs(low) / 10 or Decimal(1)
            low, high = low - pad, high + pad
        suffix = f" {unit}" if unit else ""
        top_label, bottom_label = f"{format_number(high)}{suffix}", f"{format_number(low)}{suffix}"
        left = max(left, round(12 + LABEL_CHAR_WIDTH * max(len(top_label), len(bottom_label))))
        if right - left < 10:
            raise ValueError(f"a chart {width} pixels wide has no room for labels such as {top_label!r}")
    parts.append(
        f'<rect class="qm-chart-frame" x="{left}" y="{top}" width="{right - left}" height="{bottom - top}" '
        'fill="none" stroke="currentColor" stroke-opacity="0.25"/>'
    )
    if not data:
        parts.append(
            f'<text class="qm-chart-empty" x="{(left + right) / 2:.2f}" y="{(top + bottom) / 2:.2f}" font-size="13" '
            f'text-anchor="middle" dominant-baseline="middle" fill="currentColor" fill-opacity="0.6">{_text(empty_text)}</text>'
        )
        parts.append("</svg>")
        return "".join(parts)

    xs = [_x_value(x) for x, _ in data]
    ys = [float(v) for v in values]
    y_low, y_high = float(low), float(high)
    x_low, x_high = min(xs), max(xs)

    def px(x: float) -> float:
        if x_low == x_high:
            return (left + right) / 2
        return left + (x - x_low) / (x_high - x_low) * (right - left)

    def py(y: float) -> float:
        return bottom - (y - y_low) / (y_high - y_low) * (bottom - top)

    coords: list[tuple[float, float]] = []
    for x, y in zip(xs, ys):
        if step and coords:
            coords.append((px(x), coords[-1][1]))
        coords.append((px(x), py(y)))

    if y_low < 0 < y_high:
        zero = py(0.0)
        parts.append(
            f'<line class="qm-chart-zero" x1="{left}" y1="{zero:.2f}" x2="{right}" y2="{zero:.2f}" '
            'stroke="currentColor" stroke-opacity="0.4" stroke-dasharray="4 3"/>'
        )
    parts.append(
        f'<polyline class="qm-chart-line" fill="none" stroke="{LINE_COLOUR}" stroke-width="2" '
        f'stroke-linejoin="round" points="{" ".join(f"{cx:.2f},{cy:.2f}" for cx, cy in coords)}"/>'
    )
    last_x, last_y = coords[-1]
    last_value = values[-1]
    colour = UP_COLOUR if last_value > 0 else DOWN_COLOUR if last_value < 0 else LINE_COLOUR
    parts.append(f'<circle class="qm-chart-last" cx="{last_x:.2f}" cy="{last_y:.2f}" r="3.5" fill="{colour}"/>')

    # Axis labels: the highest and lowest value shown, and the first and last x.
    parts.append(_y_label(left, top + 4, top_label))
    parts.append(_y_label(left, bottom, bottom_label))
    fmt = x_format or _default_x_format(data[0][0], data[-1][0])
    parts.append(
        f'<text x="{left}" y="{height - 6}" font-size="11" fill="currentColor" fill-opacity="0.75">{_text(fmt(data[0][0]))}</text>'
    )
    if len(data) > 1:
        parts.append(
            f'<text x="{right}" y="{height - 6}" font-size="11" text-anchor="end" fill="currentColor" '
            f'fill-opacity="0.75">{_text(fmt(data[-1][0]))}</text>'
        )
    parts.append("</svg>")
    return "".join(parts)


def downsample(points: Sequence[Point], limit: int) -> list[Point]:
    """At most `limit` points, evenly spread, always keeping the first and the last."""
    if limit < 2:
        raise ValueError("limit must be at least 2")
    if len(points) <= limit:
        return list(points)
    stride = (len(points) - 1) / (limit - 1)
    return [points[round(i * stride)] for i in range(limit)]


def format_number(value: Number, places: int = 8) -> str:
    """A compact label: at most `places` decimals, no trailing zeros, no exponent."""
    number = _decimal(value)
    text = f"{number.quantize(Decimal(1).scaleb(-places)):f}"
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return "0" if text in ("-0", "") else text


# --- helpers -------------------------------------------------------------------------------------
def _x_value(x: X) -> float:
    if isinstance(x, datetime):
        return x.timestamp()
    if isinstance(x, (Decimal, Real)) and not isinstance(x, bool):
        return float(x)
    raise TypeError(f"chart x values must be datetimes or numbers, got {x!r}")


def _decimal(value: Number) -> Decimal:
    if isinstance(value, Decimal):
        if not value.is_finite():
            raise ValueError(f"chart values must be finite, got {value}")
        return value
    if isinstance(value, bool) or not isinstance(value, Real):
        raise TypeError(f"chart y values must be numbers, got {value!r}")
    number = Decimal(repr(float(value)))
    if not number.is_finite():
        raise ValueError(f"chart values must be finite, got {value}")
    return number


def _default_x_format(first: X, last: X) -> Callable[[X], str]:
    if isinstance(first, datetime) and isinstance(last, datetime):
        pattern = "%H:%M:%S" if first.date() == last.date() else "%Y-%m-%d %H:%M"
        return lambda x: cast(datetime, x).strftime(pattern)  # a series is all datetimes or none
    return lambda x: format_number(x) if not isinstance(x, datetime) else x.isoformat()


def _y_label(left: int, y: float, text: str) -> str:
    return (
        f'<text x="{left - 6}" y="{y:.2f}" font-size="11" text-anchor="end" fill="currentColor" '
        f'fill-opacity="0.75">{_text(text)}</text>'
    )


def _text(value: str) -> str:
    return html.escape(str(value), quote=False)


def _attr(value: str) -> str:
    return '"' + html.escape(str(value), quote=True) + '"'

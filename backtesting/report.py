"""A backtest's report: one self-contained HTML page (inline SVG, no script, nothing fetched)
with the figures a trader looks at first, the equity against buy-and-hold, and the price with
the grid's fills."""
from __future__ import annotations

import html
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

WIDTH, HEIGHT = 900, 260
LEFT, RIGHT, TOP, BOTTOM = 70, 12, 18, 26
EQUITY, HOLD, PRICE, BUY, SELL = "#417690", "#9e9e9e", "#455a64", "#2e7d32", "#c62828"

FILL_MODEL = ("each candle walked open, nearer extreme, other extreme, close; a resting limit fills at its own "
              "price, in full, when the walk reaches it; the bot reacts at each of those points")


def pct(value: str | Decimal | None) -> str:
    return "n/a (a span under 7 days)" if value is None else f"{Decimal(value) * 100:.2f} %"


def stamp(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=UTC).strftime("%Y-%m-%d %H:%M")


def figures(results: dict[str, Any]) -> list[tuple[str, str]]:
    """The headline figures, in reading order, as (label, text)."""
    return [
        ("Total return", pct(results["total_return"])),
        ("Buy and hold", pct(results["buy_and_hold_return"])),
        ("Annualised", pct(results["annualised_return"])),
        ("Buy and hold, annualised", pct(results["buy_and_hold_annualised"])),
        ("Profit and loss", results["pnl"]),
        ("Realised (round trips, after fees)", results["realized_pnl"]),
        ("Fees", results["fees"]),
        ("Unrealised (inventory at the end)", results["unrealized_pnl"]),
        ("Round trips", str(results["round_trips"])),
        ("Max drawdown", f"{pct(results['max_drawdown'])} ({results['max_drawdown_amount']})"),
        ("Time in market", pct(results["time_in_market"])),
        ("Capital used at peak", results["peak_capital"]),
        ("Orders / fills", f"{results['orders']} / {results['fills']}"),
        ("Span", f"{stamp(results['start_ms'])} to {stamp(results['end_ms'])} ({results['days']} days)"),
    ]


def _scale(values: list[float], low_px: float, high_px: float):
    low, high = min(values), max(values)
    if low == high:
        low, high = low - 1, high + 1
    return low, high, lambda v: high_px - (v - low) / (high - low) * (high_px - low_px)


def chart(title: str, xs: list[int], series: list[tuple[str, str, list[float]]],
          marks: list[tuple[int, float, str]] = ()) -> str:  # type: ignore[assignment]
    """An SVG of line series over time (ms), with optional point marks (time, value, colour)."""
    if len(xs) < 2:
        return f"<p>{html.escape(title)}: not enough data</p>"
    values = [v for _, _, ys in series for v in ys] + [v for _, v, _ in marks]
    low, high, py = _scale(values, TOP, HEIGHT - BOTTOM)
    x0, x1 = xs[0], xs[-1]

    def px(ms: int) -> float:
        return LEFT + (ms - x0) / (x1 - x0) * (WIDTH - LEFT - RIGHT)

    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" role="img" '
             f'aria-label="{html.escape(title)}"><title>{html.escape(title)}</title>',
             f'<rect x="{LEFT}" y="{TOP}" width="{WIDTH - LEFT - RIGHT}" height="{HEIGHT - TOP - BOTTOM}" '
             'fill="none" stroke="#ccc"/>']
    for label, colour, ys in series:
        points = " ".join(f"{px(x):.1f},{py(y):.1f}" for x, y in zip(xs, ys))
        parts.append(f'<polyline fill="none" stroke="{colour}" stroke-width="1.5" points="{points}">'
                     f"<title>{html.escape(label)}</title></polyline>")
    for ms, value, colour in marks:
        parts.append(f'<circle cx="{px(ms):.1f}" cy="{py(value):.1f}" r="2" fill="{colour}"/>')
    for value, y in ((high, TOP + 10), (low, HEIGHT - BOTTOM)):
        parts.append(f'<text x="{LEFT - 4}" y="{y}" font-size="11" text-anchor="end">{value:,.2f}</text>')
    parts.append(f'<text x="{LEFT}" y="{HEIGHT - 8}" font-size="11">{stamp(x0)}</text>')
    parts.append(f'<text x="{WIDTH - RIGHT}" y="{HEIGHT - 8}" font-size="11" text-anchor="end">{stamp(x1)}</text>')
    legend = " ".join(f'<tspan fill="{colour}">■ {html.escape(label)}</tspan>' for label, colour, _ in series)
    parts.append(f'<text x="{LEFT + 6}" y="{TOP - 4}" font-size="12">{legend}</text></svg>')
    return "".join(parts)


def render(results: dict[str, Any], parameters: dict[str, Any], *, title: str) -> str:
    curve = results["curve"]
    xs = [row[0] for row in curve]
    equity = chart("Equity against buy-and-hold", xs, [
        ("grid equity", EQUITY, [float(row[1]) for row in curve]),
        ("buy and hold", HOLD, [float(row[3]) for row in curve]),
    ])
    marks = [(ms, float(price), BUY if side == "buy" else SELL) for ms, side, price in results["fill_marks"]]
    price = chart("Price and the grid's fills (green buys, red sells)", xs,
                  [("price at the close", PRICE, [float(row[2]) for row in curve])], marks)
    rows = "".join(f"<tr><th>{html.escape(k)}</th><td>{html.escape(v)}</td></tr>" for k, v in figures(results))
    params = "".join(f"<tr><th>{html.escape(str(k))}</th><td>{html.escape(str(v))}</td></tr>"
                     for k, v in parameters.items())
    run = results.get("run", {})
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>body{{font:14px system-ui,sans-serif;margin:24px;color:#222;max-width:960px}}
table{{border-collapse:collapse;margin:8px 0 20px}}th,td{{padding:3px 12px 3px 0;text-align:left;vertical-align:top}}
th{{font-weight:600}}td{{font-variant-numeric:tabular-nums}}h1{{font-size:20px}}h2{{font-size:16px;margin-top:24px}}
.note{{color:#555;font-size:12px}}</style></head><body>
<h1>{html.escape(title)}</h1>
<table>{rows}</table>
<h2>Equity</h2>{equity}
<h2>Price and fills</h2>{price}
<h2>Parameters</h2><table>{params}</table>
<p class="note">Fill model: {html.escape(FILL_MODEL)}. Drawdown and time in market are measured at each
candle's close. Buy and hold puts the whole starting balance into the base asset at the first close, paying the
taker fee. {run.get('candles', 0)} candles, {run.get('ticks', 0)} engine ticks, {run.get('seconds', 0)} s.</p>
</body></html>
"""

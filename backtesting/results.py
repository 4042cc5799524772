"""A backtest's numbers: the equity curve taken at every candle's close, and the summary a
trader reads (returns against buy-and-hold, drawdown, time in market, capital at peak).

Money is Decimal throughout and leaves as strings (8 places; ratios as fractions to 6 places).
"""
from __future__ import annotations

from decimal import Context, Decimal, localcontext
from typing import Any

MONEY = Decimal("0.00000001")
RATIO = Decimal("0.000001")
DAY_MS = 86_400_000
YEAR_DAYS = Decimal("365.25")
CURVE_POINTS = 1000  # points of the equity curve kept for the report
REPORT_FILLS = 2000  # fills drawn on the report's price chart (evenly picked when there are more)


class Curve:
    """The account's equity (quote + base at the close) candle by candle; keeps its running
    extremes and about `CURVE_POINTS` points of it."""

    def __init__(self, *, start_ms: int, start_price: Decimal, balances: tuple[Decimal, Decimal, Decimal],
                 candles: int, taker_fee: Decimal):
        quote_free, quote_total, base_total = balances
        self.start_ms = start_ms
        self.start_price = start_price
        self.start_equity = quote_total + base_total * start_price
        self.start_quote_free = quote_free
        self.start_base = base_total
        # Buy-and-hold: everything into the base asset at the first close, paying the taker fee.
        self.hold_base = base_total + quote_total / start_price * (1 - taker_fee)
        self.peak = self.start_equity
        self.max_drawdown = Decimal(0)  # a fraction of the peak
        self.max_drawdown_amount = Decimal(0)
        self.peak_capital = Decimal(0)
        self.candles = 0
        self.in_market = 0
        self.every = max(1, candles // CURVE_POINTS)
        self.points: list[tuple[int, Decimal, Decimal, Decimal]] = [
            (start_ms, self.start_equity, start_price, self.hold_base * start_price)]

    def close(self, ms: int, price: Decimal, balances: tuple[Decimal, Decimal, Decimal]) -> None:
        quote_free, quote_total, base_total = balances
        equity = quote_total + base_total * price
        self.candles += 1
        if base_total > self.start_base:
            self.in_market += 1
        used = self.start_quote_free - quote_free
        if used > self.peak_capital:
            self.peak_capital = used
        if equity > self.peak:
            self.peak = equity
        elif equity < self.peak:
            drop = self.peak - equity
            if drop > self.max_drawdown_amount:
                self.max_drawdown_amount = drop
            ratio = drop / self.peak
            if ratio > self.max_drawdown:
                self.max_drawdown = ratio
        if self.candles % self.every == 0:
            self.points.append((ms, equity, price, self.hold_base * price))


def money(value: Decimal) -> str:
    return str(value.quantize(MONEY))


def ratio(value: Decimal | None) -> str | None:
    return None if value is None else str(value.quantize(RATIO, context=Context(prec=60)))


ANNUALISE_FROM_DAYS = 7  # a shorter span says nothing about a year


def annualised(total: Decimal, days: Decimal) -> Decimal | None:
    """(1 + total) ** (365.25 / days) - 1; -1 when everything was lost; None for a span under
    `ANNUALISE_FROM_DAYS`, where it would only compound noise."""
    if days < ANNUALISE_FROM_DAYS:
        return None
    if total <= -1:
        return Decimal(-1)
    with localcontext() as ctx:
        ctx.prec = 28
        return (1 + total) ** (YEAR_DAYS / days) - 1


def summarise(*, curve: Curve, end_price: Decimal, end_balances: tuple[Decimal, Decimal, Decimal],
              ledger: dict[str, Any], span_ms: int, run: dict[str, Any]) -> dict[str, Any]:
    _, quote_total, base_total = end_balances
    end_equity = quote_total + base_total * end_price
    pnl = end_equity - curve.start_equity
    days = Decimal(span_ms) / DAY_MS
    total = pnl / curve.start_equity
    hold_end = curve.hold_base * end_price
    hold = (hold_end - curve.start_equity) / curve.start_equity
    unrealized = ledger["holding"] * end_price - ledger["cost"]
    fills = ledger["fills"]
    pick = max(1, -(-len(fills) // REPORT_FILLS))
    return {
        "start_ms": curve.start_ms,
        "end_ms": curve.start_ms + span_ms,
        "days": str(days.quantize(Decimal("0.0001"))),
        "start_price": str(curve.start_price),
        "end_price": str(end_price),
        "start_equity": money(curve.start_equity),
        "end_equity": money(end_equity),
        "pnl": money(pnl),
        "realized_pnl": money(ledger["realized"]),
        "fees": money(ledger["fees"]),
        "unrealized_pnl": money(unrealized),
        "holding": str(ledger["holding"].normalize()),
        # What the ledger explains of the account's change (dust and rounding only).
        "ledger_gap": money(pnl - ledger["realized"] - unrealized),
        "total_return": ratio(total),
        "annualised_return": ratio(annualised(total, days)),
        "buy_and_hold_return": ratio(hold),
        "buy_and_hold_annualised": ratio(annualised(hold, days)),
        "round_trips": ledger["round_trips"],
        "orders": ledger["orders"],
        "orders_rejected": ledger["orders_rejected"],
        "fills": len(fills),
        "volume": str(ledger["volume"].normalize()),
        "max_drawdown": ratio(curve.max_drawdown),
        "max_drawdown_amount": money(curve.max_drawdown_amount),
        "time_in_market": ratio(Decimal(curve.in_market) / curve.candles if curve.candles else Decimal(0)),
        "peak_capital": money(curve.peak_capital),
        "run": run,
        "curve": [[ms, money(equity), str(price), money(hold)] for ms, equity, price, hold in curve.points],
        "fill_marks": [[ms, side, str(price)] for ms, side, price, _ in fills[::pick]],
    }

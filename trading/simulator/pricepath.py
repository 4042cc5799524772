"""Price paths: a seeded geometric Brownian motion, or a replay of recorded klines.

A path is a list of candles; the last one is the current candle and its close is the current
price. `advance()` appends the next candle, `override()` moves the current price out of band
(the current candle's close, high and low follow). All prices are Decimals on the tick grid.
"""
from __future__ import annotations

import csv
import itertools
import random
from dataclasses import dataclass, replace
from decimal import ROUND_DOWN, ROUND_HALF_EVEN, Decimal, InvalidOperation
from pathlib import Path

CSV_COLUMNS = ("open_time_ms", "open", "high", "low", "close", "volume")


@dataclass(frozen=True)
class Candle:
    open_time: int
    open: Decimal
    high: Decimal
    low: Decimal
    close: Decimal
    volume: Decimal


def round_to(value: Decimal, unit: Decimal, rounding: str = ROUND_HALF_EVEN) -> Decimal:
    """Round `value` to a multiple of `unit`, written with the unit's decimals."""
    return ((value / unit).to_integral_value(rounding=rounding) * unit).quantize(unit)


def floor_to(value: Decimal, unit: Decimal) -> Decimal:
    return round_to(value, unit, ROUND_DOWN)


class PricePath:
    """The candle history of one market; subclasses say how the next candle is made."""

    def __init__(self, first: Candle, interval_ms: int, max_candles: int) -> None:
        self.interval_ms = interval_ms
        self._max_candles = max_candles
        self._candles: list[Candle] = [first]

    @property
    def price(self) -> Decimal:
        return self._candles[-1].close

    @property
    def current(self) -> Candle:
        return self._candles[-1]

    def candles(self) -> list[Candle]:
        return list(self._candles)

    def override(self, price: Decimal) -> None:
        """Move the current price; the current candle's high/low widen to include it."""
        last = self._candles[-1]
        self._candles[-1] = replace(last, close=price, high=max(last.high, price),
                                    low=min(last.low, price))

    def advance(self) -> Candle | None:
        """Append and return the next candle, or None when the path has ended."""
        candle = self._next_candle()
        if candle is None:
            return None
        self._candles.append(candle)
        if len(self._candles) > self._max_candles:
            del self._candles[: len(self._candles) - self._max_candles]
        return candle

    def _next_candle(self) -> Candle | None:
        raise NotImplementedError


class GbmPath(PricePath):
    """Geometric Brownian motion: close = previous close * exp(drift - vol^2/2 + vol * Z).

    Z comes from `random.Random(seed)`; it is converted with `Decimal(str(z))` and the rest of
    the arithmetic is Decimal. Each step is one candle of `interval_ms`; its high and low span
    the previous and the new close, so matching sees every price the path passed through.
    """

    def __init__(self, start: Decimal, tick: Decimal, volatility: Decimal, drift: Decimal,
                 seed: str, start_time_ms: int, interval_ms: int, max_candles: int) -> None:
        self._tick = tick
        self._volatility = volatility
        self._drift = drift
        self._rng = random.Random(seed)
        price = max(round_to(start, tick), tick)
        first = Candle(start_time_ms, price, price, price, price, Decimal("0"))
        super().__init__(first, interval_ms, max_candles)

    def _next_candle(self) -> Candle:
        last = self._candles[-1]
        z = Decimal(str(self._rng.gauss(0.0, 1.0)))
        log_return = self._drift - self._volatility * self._volatility / 2 + self._volatility * z
        close = max(round_to(last.close * log_return.exp(), self._tick), self._tick)
        volume = Decimal(str(round(self._rng.uniform(0.5, 20.0), 3)))
        return Candle(last.open_time + self.interval_ms, last.close, max(last.close, close),
                      min(last.close, close), close, volume)


class ReplayPath(PricePath):
    """Replays recorded candles; the path starts on the first and ends on the last."""

    def __init__(self, rows: list[Candle], max_candles: int) -> None:
        if not rows:
            raise ValueError("a replay needs at least one candle")
        interval = rows[1].open_time - rows[0].open_time if len(rows) > 1 else 60_000
        super().__init__(rows[0], interval, max_candles)
        self._rows = rows
        self._cursor = 0

    @property
    def remaining(self) -> int:
        return len(self._rows) - 1 - self._cursor

    def _next_candle(self) -> Candle | None:
        if self._cursor + 1 >= len(self._rows):
            return None
        self._cursor += 1
        return self._rows[self._cursor]


def load_klines_csv(path: str | Path, tick: Decimal) -> list[Candle]:
    """Read a klines CSV (columns open_time_ms, open, high, low, close, volume).

    Prices are rounded to `tick`. Raises ValueError naming the file and line on bad input.
    """
    path = Path(path)
    try:
        with path.open(newline="") as handle:
            reader = csv.DictReader(handle)
            missing = [name for name in CSV_COLUMNS if name not in (reader.fieldnames or [])]
            if missing:
                raise ValueError(f"{path}: missing columns {', '.join(missing)}")
            rows = [_parse_row(row, tick, path, number)
                    for number, row in enumerate(reader, start=2)]
    except OSError as exc:
        raise ValueError(f"{path}: cannot read: {exc.strerror or exc}") from None
    if not rows:
        raise ValueError(f"{path}: no klines")
    for earlier, later in itertools.pairwise(rows):
        if later.open_time <= earlier.open_time:
            raise ValueError(f"{path}: open_time_ms must increase ({later.open_time})")
    return rows


def _parse_row(row: dict, tick: Decimal, path: Path, line: int) -> Candle:
    try:
        open_time = int(row["open_time_ms"])
        o, h, low, c = (round_to(Decimal(row[name]), tick) for name in ("open", "high", "low", "close"))
        volume = Decimal(row["volume"])
    except (TypeError, ValueError, InvalidOperation):
        raise ValueError(f"{path}:{line}: not a valid kline row: {row}") from None
    if min(o, h, low, c) <= 0 or volume < 0 or not low <= min(o, c) <= max(o, c) <= h:
        raise ValueError(f"{path}:{line}: inconsistent kline (low <= open/close <= high, > 0)")
    return Candle(open_time, o, h, low, c, volume)

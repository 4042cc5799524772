"""Price paths: a seeded geometric Brownian motion, or a replay of recorded klines.

A path is a list of candles; the last one is the current candle and its close is the current
price. `advance()` appends the next candle, `override()` moves the current price out of band
(the current candle's close, high and low follow). All prices are Decimals on the tick grid.
"""
from __future__ import annotations

import csv
import itertools
import random
from collections.abc import Iterable, Iterator
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


def candle_path(candle: Candle, interval_ms: int) -> list[tuple[Decimal, int]]:
    """The prices a candle is taken to pass through, with the time each is reached: the open,
    then the nearer of the high and the low (the high on a tie), then the other, then the
    close, at a third of the candle apart (the close 1 ms before the next candle opens)."""
    low_first = candle.open - candle.low < candle.high - candle.open
    first, second = (candle.low, candle.high) if low_first else (candle.high, candle.low)
    start = candle.open_time
    return [(candle.open, start), (first, start + interval_ms // 3),
            (second, start + 2 * interval_ms // 3), (candle.close, start + interval_ms - 1)]


@dataclass(frozen=True)
class Segment:
    """One stretch of a walked price path: from `start` to `end`, reached at `time_ms`."""

    start: Decimal
    end: Decimal
    time_ms: int

    @property
    def low(self) -> Decimal:
        return min(self.start, self.end)

    @property
    def high(self) -> Decimal:
        return max(self.start, self.end)


class PricePath:
    """The candle history of one market; subclasses say how the next candle is made."""

    def __init__(self, first: Candle, interval_ms: int, max_candles: int) -> None:
        self.interval_ms = interval_ms
        self._max_candles = max_candles
        self._candles: list[Candle] = [first]
        self._walking: Candle | None = None  # the candle `advance_point` is part way through
        self._points: list[tuple[Decimal, int]] = []  # its points still ahead
        self._ahead: Candle | None = None  # the next candle, read by `peek` and not yet walked

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
        if self._walking is not None:
            raise RuntimeError("advance() in the middle of a candle walked by advance_point()")
        candle = self._take()
        if candle is None:
            return None
        self._append(candle)
        return candle

    def peek(self) -> Candle | None:
        """The next candle, not yet walked (None when the path has ended); only between candles."""
        if self._walking is not None:
            raise RuntimeError("peek() in the middle of a candle walked by advance_point()")
        if self._ahead is None:
            self._ahead = self._next_candle()
        return self._ahead

    def _take(self) -> Candle | None:
        candle, self._ahead = self._ahead, None
        return candle if candle is not None else self._next_candle()

    def advance_point(self) -> Segment | None:
        """Walk to the next point of `candle_path` (the next candle's open after a close) and
        return the stretch walked, or None when the path has ended. While a candle is walked,
        the current candle holds what has been seen of it (its volume once it is complete)."""
        start = self.price
        if not self._points:
            candle = self._take()
            if candle is None:
                return None
            (price, time_ms), *self._points = candle_path(candle, self.interval_ms)
            self._walking = candle
            self._append(Candle(candle.open_time, price, price, price, price, Decimal(0)))
            return Segment(start, price, time_ms)
        price, time_ms = self._points.pop(0)
        last = self._candles[-1]
        if self._points:
            self._candles[-1] = replace(last, high=max(last.high, price), low=min(last.low, price), close=price)
        else:
            self._candles[-1], self._walking = self._walking or last, None
        return Segment(start, price, time_ms)

    @property
    def mid_candle(self) -> bool:
        """Whether `advance_point` is part way through a candle."""
        return self._walking is not None

    def _append(self, candle: Candle) -> None:
        self._candles.append(candle)
        if len(self._candles) > self._max_candles:
            del self._candles[: len(self._candles) - self._max_candles]

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
    """Replays recorded candles; the path starts on the first and ends on the last. The rows
    may be a list or any iterator (a file read as it is replayed)."""

    def __init__(self, rows: Iterable[Candle], max_candles: int) -> None:
        ahead = iter(rows)
        first = next(ahead, None)
        if first is None:
            raise ValueError("a replay needs at least one candle")
        second = next(ahead, None)
        interval = second.open_time - first.open_time if second is not None else 60_000
        super().__init__(first, interval, max_candles)
        self._rows = itertools.chain([] if second is None else [second], ahead)

    def _next_candle(self) -> Candle | None:
        return next(self._rows, None)


def load_klines_csv(path: str | Path, tick: Decimal) -> list[Candle]:
    """Read a klines CSV (columns open_time_ms, open, high, low, close, volume).

    Prices are rounded to `tick`. Raises ValueError naming the file and line on bad input.
    """
    rows = list(iter_klines_csv(path, tick))
    if not rows:
        raise ValueError(f"{path}: no klines")
    return rows


def iter_klines_csv(path: str | Path, tick: Decimal, start_ms: int | None = None) -> Iterator[Candle]:
    """The rows of a klines CSV one by one, as `load_klines_csv` reads them; ValueError naming
    the file and line at the first bad row (a missing column, a bad number, an inconsistent
    candle, a time that repeats or goes back). Rows before `start_ms` are skipped, and only their
    time is read (for a file checked whole before)."""
    path = Path(path)
    try:
        with path.open(newline="") as handle:
            reader = csv.reader(handle)
            header = next(reader, [])
            missing = [name for name in CSV_COLUMNS if name not in header]
            if missing:
                raise ValueError(f"{path}: missing columns {', '.join(missing)}")
            columns = [header.index(name) for name in CSV_COLUMNS]
            power_of_ten = tick.as_tuple().digits == (1,)
            previous: int | None = None
            at = columns[0]
            for line, row in enumerate(reader, start=2):
                if start_ms is not None and (previous is None or previous < start_ms):  # not there yet
                    try:
                        skipped = int(row[at])
                    except (ValueError, IndexError):
                        skipped = None
                    if skipped is not None and skipped < start_ms:
                        previous = skipped
                        continue
                candle = _parse_row(row, columns, tick, power_of_ten, path, line)
                if previous is not None and candle.open_time <= previous:
                    problem = "repeats the row before" if candle.open_time == previous else "is before the row before"
                    raise ValueError(f"{path}:{line}: open_time_ms {candle.open_time} {problem}: rows must be "
                                     "sorted by time, each once")
                previous = candle.open_time
                yield candle
    except OSError as exc:
        raise ValueError(f"{path}: cannot read: {exc.strerror or exc}") from None


def _parse_row(row: list[str], columns: list[int], tick: Decimal, power_of_ten: bool, path: Path,
               line: int) -> Candle:
    at, o_at, h_at, low_at, c_at, vol_at = columns
    try:
        open_time = int(row[at])
        o, h, low, c, volume = (Decimal(row[o_at]), Decimal(row[h_at]), Decimal(row[low_at]), Decimal(row[c_at]),
                                Decimal(row[vol_at]))
    except (TypeError, ValueError, InvalidOperation, IndexError):
        shown = dict(zip(CSV_COLUMNS, (row[i] if i < len(row) else None for i in columns)))
        raise ValueError(f"{path}:{line}: not a valid kline row: {shown}") from None
    if not (o.is_finite() and h.is_finite() and low.is_finite() and c.is_finite() and volume.is_finite()):
        raise ValueError(f"{path}:{line}: not a valid kline row: a price or the volume is not a finite number")
    try:
        o, h, low, c = (_on_tick(o, tick, power_of_ten), _on_tick(h, tick, power_of_ten),
                        _on_tick(low, tick, power_of_ten), _on_tick(c, tick, power_of_ten))
    except InvalidOperation:
        raise ValueError(f"{path}:{line}: not a valid kline row: a price has more digits than a Decimal holds") from None
    if min(o, h, low, c) <= 0 or volume < 0 or not low <= min(o, c) <= max(o, c) <= h:
        raise ValueError(f"{path}:{line}: inconsistent kline (low <= open/close <= high, > 0)")
    return Candle(open_time, o, h, low, c, volume)


def _on_tick(value: Decimal, tick: Decimal, power_of_ten: bool) -> Decimal:
    """A finite `value` rounded to the tick (half even); a tick of 0.01, 1 or 10 is one quantize."""
    return value.quantize(tick, rounding=ROUND_HALF_EVEN) if power_of_ten else round_to(value, tick)

"""The candle files backtests read: checked whole before a run starts, then read row by row
as the run goes, so a year of 1-minute candles never sits in memory."""
from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

from trading.simulator.pricepath import Candle, iter_klines_csv


class KlinesError(ValueError):
    """A candle file or range a backtest cannot run on; the message names the file and line."""


@dataclass(frozen=True)
class KlineFile:
    """What a check of a candle file found, over the range asked for."""

    path: Path
    interval_ms: int
    first_ms: int  # open time of the first candle in range
    last_ms: int  # open time of the last candle in range
    candles: int
    first_open: Decimal
    first_close: Decimal  # where a run starts: its grid is anchored at the first close
    last_close: Decimal
    high: Decimal  # the highest price in range
    low: Decimal

    @property
    def span_ms(self) -> int:
        return self.last_ms + self.interval_ms - self.first_ms


def when(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=UTC).strftime("%Y-%m-%d %H:%M")


def first_price(path: Path) -> Decimal:
    """The first row's open, unrounded (to choose a market's filters before the file is checked)."""
    try:
        for candle in iter_klines_csv(path, Decimal("1E-18")):
            return candle.open
    except ValueError as exc:
        raise KlinesError(str(exc)) from None
    raise KlinesError(f"{path}: no candles")


def check(path: Path, tick: Decimal, *, start_ms: int | None = None, end_ms: int | None = None) -> KlineFile:
    """Read the whole file once and refuse what a run could not use: unreadable or bad rows,
    rows out of order or repeated, a gap (a candle missing between two rows), a range that is not
    in the file, fewer than two candles in range."""
    interval = None
    previous: Candle | None = None
    first: Candle | None = None
    last: Candle | None = None
    count = 0
    high = low = Decimal(0)
    file_first: int | None = None
    try:
        for line, candle in enumerate(iter_klines_csv(path, tick), start=2):
            if file_first is None:
                file_first = candle.open_time
            if previous is not None:
                step = candle.open_time - previous.open_time
                if interval is None:
                    interval = step
                elif step != interval:
                    missing = step // interval - 1
                    raise KlinesError(
                        f"{path}:{line}: a gap: {when(candle.open_time)} follows {when(previous.open_time)}, "
                        f"{missing} candle(s) of {interval // 1000}s are missing (fill them with fetchklines)"
                        if step % interval == 0 and missing > 0 else
                        f"{path}:{line}: open_time_ms {candle.open_time} is {step} ms after the row before; "
                        f"the file's candles are {interval} ms apart")
            previous = candle
            if (start_ms is None or candle.open_time >= start_ms) and (end_ms is None or candle.open_time < end_ms):
                if first is None:
                    first, high, low = candle, candle.high, candle.low
                high, low = max(high, candle.high), min(low, candle.low)
                last = candle
                count += 1
    except KlinesError:
        raise
    except ValueError as exc:
        raise KlinesError(str(exc)) from None
    if previous is None or file_first is None:
        raise KlinesError(f"{path}: no candles")
    if first is None or last is None:
        raise KlinesError(f"{path}: no candle in the range asked for; the file runs from {when(file_first)} "
                          f"to {when(previous.open_time)}")
    if start_ms is not None and start_ms < file_first or end_ms is not None and interval and end_ms > previous.open_time + interval:
        raise KlinesError(f"{path}: the range asked for runs outside the file, which holds {when(file_first)} "
                          f"to {when(previous.open_time)}")
    if count < 2 or interval is None:
        raise KlinesError(f"{path}: a backtest needs at least two candles in range, found {count}")
    return KlineFile(path=path, interval_ms=interval, first_ms=first.open_time, last_ms=last.open_time,
                     candles=count, first_open=first.open, first_close=first.close, last_close=last.close, high=high, low=low)


def candles(path: Path, tick: Decimal, *, start_ms: int | None = None, end_ms: int | None = None) -> Iterator[Candle]:
    """The candles of a checked file within the range, read as they are needed."""
    for candle in iter_klines_csv(path, tick, start_ms=start_ms):
        if end_ms is not None and candle.open_time >= end_ms:
            return
        yield candle

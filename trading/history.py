"""Price history to a CSV file, in the layout the simulator replays and backtests read
(`open_time_ms,open,high,low,close,volume`): closed candles only, in pages through the gateway
(so within the account's request budget), appended page by page so an interrupted download
resumes where the file ends."""
from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from trading.exchange import errors
from trading.exchange.gateway import ExchangeGateway

HEADER = "open_time_ms,open,high,low,close,volume"
PAGE = 1000  # candles per request: Binance's maximum for klines (weight 2 on spot)


class HistoryError(ValueError):
    """A file or range that cannot be downloaded into; nothing was written."""


@dataclass
class Download:
    path: Path
    resumed_from_ms: int | None = None  # the open time the file already reached, when resuming
    written: int = 0
    requests: int = 0
    waits: int = 0  # times the request budget held a page back
    gaps: int = 0  # missing candles between rows the exchange returned
    first_ms: int | None = None
    last_ms: int | None = None


def resume_point(path: Path, since_ms: int, step_ms: int) -> int | None:
    """The open time of the file's last complete row (None for a new or empty file). Drops an
    incomplete last line left by an interrupted write. HistoryError when the file is not ours or
    starts after `since_ms`. Reads the first two lines and the end of the file, not the rows
    between (a year of 1-minute candles is about 30 MB)."""
    if not path.exists() or path.stat().st_size == 0:
        return None
    with path.open("rb+") as handle:
        header = handle.readline()
        if header.decode(errors="replace").strip() != HEADER:
            raise HistoryError(f"{path} exists and is not a klines file (its first line is not {HEADER!r})")
        first_row = handle.readline()
        size = handle.seek(0, os.SEEK_END)
        end, last_row = _last_line(handle, size)
        if end < size:
            handle.truncate(end)  # an incomplete last line: rewritten by the resumed download
    if not first_row.endswith(b"\n") or end <= len(header):
        return None  # the header alone (and perhaps a cut-short row, now dropped)
    try:
        first, last = int(first_row.split(b",")[0]), int(last_row.split(b",")[0])
    except ValueError:
        raise HistoryError(f"{path}: a row's open time is not an integer of milliseconds") from None
    if first > since_ms + step_ms - 1:
        raise HistoryError(f"{path} starts at {first}, after --since ({since_ms}): it cannot be resumed into; "
                           "use another file")
    return last


def _last_line(handle, size: int) -> tuple[int, bytes]:
    """(where the file's complete lines end, the last complete line), reading back from the end."""
    chunk = 4096
    while True:
        start = max(0, size - chunk)
        handle.seek(start)
        tail = handle.read(size - start)
        end = tail.rfind(b"\n") + 1  # 0: no complete line in the tail
        if end:
            begin = tail.rfind(b"\n", 0, end - 1) + 1
            if begin or start == 0:
                return start + end, tail[begin:end]
        elif start == 0:
            return 0, b""
        chunk *= 4


def download(gateway: ExchangeGateway, symbol: str, timeframe: str, since_ms: int, until_ms: int, path: Path,
             *, progress: Callable[[Download, int], None] = lambda d, at: None,
             now_ms: Callable[[], int] = lambda: int(time.time() * 1000),
             sleep: Callable[[float], None] = time.sleep, page: int = PAGE) -> Download:
    """Candles of `symbol` with open times in [since_ms, until_ms] appended to `path`, oldest
    first; `progress(download, reached_ms)` after every page."""
    step_ms = timeframe_ms(timeframe)
    if until_ms < since_ms:
        raise HistoryError(f"--until ({until_ms}) is before --since ({since_ms})")
    result = Download(path)
    last = resume_point(path, since_ms, step_ms)
    start = since_ms
    if last is not None:
        result.resumed_from_ms = last
        start = last + step_ms
    new_file = not path.exists() or path.stat().st_size == 0
    with path.open("a", encoding="ascii", newline="\n") as out:
        if new_file:
            out.write(HEADER + "\n")
        previous = last
        while start <= until_ms:
            try:
                rows = gateway.fetch_ohlcv(symbol, timeframe, limit=page, since_ms=start)
            except errors.RateLimited as exc:
                result.waits += 1
                sleep(max(exc.retry_after or 1.0, 0.1))
                continue
            result.requests += 1
            closed_before = now_ms() - step_ms  # the candle still open has no final close yet
            rows = [r for r in rows if start <= r[0] <= until_ms and r[0] <= closed_before]
            if not rows:
                break
            for open_ms, *values in rows:
                if previous is not None and open_ms - previous > step_ms:
                    result.gaps += (open_ms - previous) // step_ms - 1
                out.write(",".join([str(open_ms), *(format(v, "f") for v in values)]) + "\n")
                previous = open_ms
            out.flush()
            os.fsync(out.fileno())
            result.written += len(rows)
            result.first_ms = result.first_ms if result.first_ms is not None else rows[0][0]
            result.last_ms = rows[-1][0]
            start = rows[-1][0] + step_ms
            progress(result, start)
    return result


_UNITS_MS = {"s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000, "w": 7 * 86_400_000}


def timeframe_ms(timeframe: str) -> int:
    """Milliseconds of a ccxt timeframe such as 1m, 15m, 4h or 1d (not 1M: months vary)."""
    amount, unit = timeframe[:-1], timeframe[-1:]
    if unit not in _UNITS_MS or not amount.isdigit() or int(amount) <= 0:
        raise HistoryError(f"timeframe {timeframe!r} is not one of the form 1m, 15m, 1h, 4h, 1d, 1w")
    return int(amount) * _UNITS_MS[unit]

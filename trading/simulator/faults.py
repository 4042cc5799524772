"""Injected faults (latency, error replies, lost replies) and the request-weight budget."""
from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

MAX_DELAY_MS = 60_000  # latency and hangs are bounded so a stuck test cannot hang forever
DROP_MODES = ("close", "504")


@dataclass
class FailRule:
    """The next `count` matching requests are answered with `status` and this body.

    `code` set: a Binance JSON error body {"code", "msg"}; otherwise `msg` as plain text.
    `hang_ms`: wait that long before answering (longer than the client's timeout makes the
    client give up first). `execute`: run the request for real first, then answer the failure,
    so the outcome is unknown to the client (like Binance's -1007).
    """

    path: str | None
    method: str | None
    count: int
    status: int
    code: int | None
    msg: str
    hang_ms: int = 0
    execute: bool = False


@dataclass
class DropRule:
    """The next `count` matching requests are executed, then their reply is lost.

    mode "close": the connection is closed without any response (the client sees a network
    error); mode "504": the reply is replaced by an HTTP 504 without a Binance code.
    """

    path: str | None
    method: str | None
    count: int
    mode: str = "close"


def _matches(rule_path: str | None, rule_method: str | None, method: str, path: str) -> bool:
    return (rule_path is None or rule_path == path) and (rule_method is None
                                                         or rule_method == method)


class Faults:
    """Thread-safe store of the faults injected through `/sim/latency`, `/sim/fail` and
    `/sim/drop`."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._latency: dict[tuple[str | None, str | None], int] = {}
        self._fail: list[FailRule] = []
        self._drop: list[DropRule] = []

    def clear(self) -> None:
        with self._lock:
            self._latency.clear()
            self._fail.clear()
            self._drop.clear()

    def set_latency(self, ms: int, path: str | None = None, method: str | None = None) -> None:
        """Delay matching requests by `ms` (0 removes the rule). The most specific rule wins."""
        if not 0 <= ms <= MAX_DELAY_MS:
            raise ValueError(f"ms must be between 0 and {MAX_DELAY_MS}")
        with self._lock:
            key = (method.upper() if method else None, path)
            if ms:
                self._latency[key] = ms
            else:
                self._latency.pop(key, None)

    def latency_ms(self, method: str, path: str) -> int:
        with self._lock:
            for key in ((method, path), (None, path), (method, None), (None, None)):
                if key in self._latency:
                    return self._latency[key]
            return 0

    def add_fail(self, rule: FailRule) -> None:
        if rule.count < 1:
            raise ValueError("count must be at least 1")
        if not 100 <= rule.status <= 599:
            raise ValueError("status must be an HTTP status code")
        if not 0 <= rule.hang_ms <= MAX_DELAY_MS:
            raise ValueError(f"hang_ms must be between 0 and {MAX_DELAY_MS}")
        with self._lock:
            self._fail.append(rule)

    def add_drop(self, rule: DropRule) -> None:
        if rule.count < 1:
            raise ValueError("count must be at least 1")
        if rule.mode not in DROP_MODES:
            raise ValueError(f"mode must be one of {', '.join(DROP_MODES)}")
        with self._lock:
            self._drop.append(rule)

    def take_fail(self, method: str, path: str) -> FailRule | None:
        """The first fail rule matching this request, with one use consumed."""
        with self._lock:
            return _take(self._fail, method, path)

    def take_drop(self, method: str, path: str) -> DropRule | None:
        with self._lock:
            return _take(self._drop, method, path)


def _take(rules: list, method: str, path: str):
    for rule in rules:
        if _matches(rule.path, rule.method, method, path):
            rule.count -= 1
            if rule.count <= 0:
                rules.remove(rule)
            return rule
    return None


class WeightMeter:
    """Binance's REQUEST_WEIGHT budget: `limit` per calendar minute, counted per server (Binance
    counts per IP), and its IP ban for a client that keeps hitting it.

    A minute in which a request was refused counts as a violation; `ban_after` violated minutes
    in a row ban the client for `ban_seconds` (doubled for each ban after the first, up to three
    days, as Binance's bans "scale in duration for repeat offenders"). While banned, every request
    is answered 418 with the seconds left. Refused requests are not charged."""

    MAX_BAN_SECONDS = 3 * 86_400

    def __init__(self, limit: int, clock: Callable[[], float] = time.time, *, ban_after: int = 3,
                 ban_seconds: int = 120) -> None:
        self.limit = limit
        self.clock = clock  # seconds; replaceable in tests
        self.ban_after = ban_after
        self.ban_seconds = ban_seconds
        self._lock = threading.Lock()
        self._minute = -1
        self._used = 0
        self._violated: list[int] = []  # recent minutes with a refused request
        self._bans = 0
        self.banned_until = 0.0
        self.refused = 0  # 429s answered
        self.banned_replies = 0  # 418s answered
        self.total = 0  # weight charged since the start (refunds deducted)

    def charge(self, weight: int) -> tuple[bool, int, int]:
        """Spend `weight` if the budget allows: (allowed, used this minute, seconds to wait)."""
        with self._lock:
            now = self.clock()
            minute = int(now // 60)
            if minute != self._minute:
                self._minute, self._used = minute, 0
            if self._used + weight > self.limit:
                self.refused += 1
                if minute not in self._violated:
                    self._violated = [m for m in self._violated if m >= minute - self.ban_after] + [minute]
                    run = all(minute - k in self._violated for k in range(self.ban_after))
                    if run:
                        self._ban(now, self.ban_seconds * 2 ** self._bans)
                retry_after = max(1, math.ceil(60 - now % 60))
                return False, self._used, retry_after
            self._used += weight
            self.total += weight
            return True, self._used, 0

    def refund(self, weight: int) -> int:
        """Give back a charge (Binance does not charge a successful order request); returns the
        weight used this minute."""
        with self._lock:
            if int(self.clock() // 60) == self._minute:
                self._used = max(0, self._used - weight)
            self.total -= weight
            return self._used

    def ban_left(self) -> int:
        """Seconds of IP ban left (0: not banned); counts the 418 the caller is about to send."""
        with self._lock:
            left = self.banned_until - self.clock()
            if left <= 0:
                return 0
            self.banned_replies += 1
            return max(1, math.ceil(left))

    def ban(self, seconds: float) -> None:
        with self._lock:
            self._ban(self.clock(), seconds)

    def _ban(self, now: float, seconds: float) -> None:
        self._bans += 1
        self._violated = []
        self.banned_until = now + min(seconds, self.MAX_BAN_SECONDS)

    def used(self) -> int:
        with self._lock:
            return self._used if int(self.clock() // 60) == self._minute else 0

    def reset(self, limit: int | None = None) -> None:
        with self._lock:
            if limit is not None:
                if limit <= 0:
                    raise ValueError("limit must be positive")
                self.limit = limit
            self._used = 0
            self._violated = []
            self._bans = 0
            self.banned_until = 0.0


class OrderMeter:
    """Binance's ORDERS limits (unfilled order count) for one account: `per_10s` new orders per
    10-second window and `per_day` per UTC day. An order that fills, even partly, no longer counts
    (Binance decrements the count), in the windows it was counted in."""

    def __init__(self, per_10s: int, per_day: int, clock: Callable[[], float] = time.time, *,
                 long_window_s: int = 86_400) -> None:
        self.per_10s = per_10s
        self.per_day = per_day  # per `long_window_s`: a UTC day on spot, a minute on USD-M futures
        self.long_window_s = long_window_s
        self.clock = clock
        self._lock = threading.Lock()
        self._window = self._day = -1
        self._in_window = self._in_day = 0
        self._counted: dict[int, tuple[int, int]] = {}  # order id -> (10 s window, day) it counted in
        self.refused = 0

    def take(self) -> tuple[bool, int, int, int]:
        """Count one new order if both limits allow: (allowed, count in 10 s, count today, seconds to wait)."""
        with self._lock:
            now = self.clock()
            self._roll(now)
            if self._in_window >= self.per_10s or self._in_day >= self.per_day:
                self.refused += 1
                wait = 10 - now % 10 if self._in_window >= self.per_10s else self.long_window_s - now % self.long_window_s
                return False, self._in_window, self._in_day, max(1, math.ceil(wait))
            self._in_window += 1
            self._in_day += 1
            return True, self._in_window, self._in_day, 0

    def placed(self, order_id: int) -> None:
        """The order counted by the last `take()` got this id."""
        with self._lock:
            self._counted[order_id] = (self._window, self._day)

    def give_back(self) -> None:
        """The order counted by the last `take()` was not accepted."""
        with self._lock:
            self._in_window = max(0, self._in_window - 1)
            self._in_day = max(0, self._in_day - 1)

    def filled(self, order_id: int) -> None:
        """The order traded: it no longer counts against the limits."""
        with self._lock:
            counted = self._counted.pop(order_id, None)
            if counted is None:
                return
            self._roll(self.clock())
            window, day = counted
            if window == self._window:
                self._in_window = max(0, self._in_window - 1)
            if day == self._day:
                self._in_day = max(0, self._in_day - 1)

    def counts(self) -> tuple[int, int]:
        with self._lock:
            self._roll(self.clock())
            return self._in_window, self._in_day

    def reset(self) -> None:
        with self._lock:
            self._window = self._day = -1
            self._in_window = self._in_day = 0
            self._counted.clear()

    def _roll(self, now: float) -> None:
        window, day = int(now // 10), int(now // self.long_window_s)
        if window != self._window:
            self._window, self._in_window = window, 0
        if day != self._day:
            self._day, self._in_day = day, 0

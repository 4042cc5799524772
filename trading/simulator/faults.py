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
    """Binance's REQUEST_WEIGHT budget: `limit` per calendar minute, counted per server."""

    def __init__(self, limit: int, clock: Callable[[], float] = time.time) -> None:
        self.limit = limit
        self.clock = clock  # seconds; replaceable in tests
        self._lock = threading.Lock()
        self._minute = -1
        self._used = 0

    def charge(self, weight: int) -> tuple[bool, int, int]:
        """Spend `weight` if the budget allows: (allowed, used this minute, seconds to wait)."""
        with self._lock:
            now = self.clock()
            minute = int(now // 60)
            if minute != self._minute:
                self._minute, self._used = minute, 0
            if self._used + weight > self.limit:
                retry_after = max(1, math.ceil(60 - now % 60))
                return False, self._used, retry_after
            self._used += weight
            return True, self._used, 0

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

"""Prometheus metrics of the lock service.

The three names are the ones the original QuantMesh exported, kept exactly:

    quantmesh_lock_acquire_total{key, status}     status: success | busy | timeout | error
    quantmesh_lock_hold_duration_seconds{key}     histogram, from grant to release
    quantmesh_lock_conflict_total{key}            an acquire found the key held by someone else

The `key` label must stay bounded: it is the lock family, the exchange and the symbol
(`order:binance:BTC/USDT`), never a grid level, a price or an order id. `metric_label()` maps a
full lock key to that label.

The metrics live on the default registry. Registration is get-or-create, so importing this module a
second time (a reload, or the module reached under two names) reuses the collectors instead of
failing with a duplicate-registration error.
"""
from __future__ import annotations

import re
from functools import lru_cache
from typing import Any, Callable

from prometheus_client import REGISTRY, Counter, Histogram

# Lock holds range from a few milliseconds (one order request) to tens of seconds (a reconcile pass).
HOLD_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


def _get_or_create(name: str, factory: Callable[[], Any]) -> Any:
    existing = REGISTRY._names_to_collectors.get(name)  # no public lookup by name exists
    return existing if existing is not None else factory()


ACQUIRE_TOTAL: Counter = _get_or_create(
    "quantmesh_lock_acquire_total",
    lambda: Counter(
        "quantmesh_lock_acquire_total",
        "Lock acquire attempts by outcome (success, busy, timeout, error).",
        ["key", "status"],
    ),
)
HOLD_DURATION: Histogram = _get_or_create(
    "quantmesh_lock_hold_duration_seconds",
    lambda: Histogram(
        "quantmesh_lock_hold_duration_seconds",
        "Time from lock grant to release.",
        ["key"],
        buckets=HOLD_BUCKETS,
    ),
)
CONFLICT_TOTAL: Counter = _get_or_create(
    "quantmesh_lock_conflict_total",
    lambda: Counter(
        "quantmesh_lock_conflict_total",
        "Acquire attempts that found the lock held by another owner.",
        ["key"],
    ),
)


# --- the bounded `key` label ---------------------------------------------------------------------

OTHER = "other"
_FAMILY = re.compile(r"[a-z][a-z0-9_-]{0,31}")
_EXCHANGE = re.compile(r"[A-Za-z][A-Za-z0-9_.-]{0,31}")
# A market symbol: `BTC/USDT`, `BTCUSDT`, or a ccxt derivative symbol `BTC/USDT:USDT`.
_SYMBOL = re.compile(r"[A-Za-z][A-Za-z0-9._-]{0,31}(/[A-Za-z0-9._-]{1,32})?(:[A-Z0-9]{1,16})?")
# The settlement currency of a derivative symbol (`:USDT`); sub-resource names are lower case.
_SETTLE = re.compile(r"[A-Z0-9]{1,16}")


def metric_label(key: str) -> str:
    """The bounded metric label of a lock key: `<family>:<exchange>:<symbol>`.

    `order:binance:BTC/USDT:level:-12` -> `order:binance:BTC/USDT`
    `cancel:binance:BTC/USDT:order:123` -> `cancel:binance:BTC/USDT`
    `reconcile:binance:BTC/USDT` -> `reconcile:binance:BTC/USDT`
    `order:okx:BTC/USDT:USDT:level:3` -> `order:okx:BTC/USDT:USDT`

    Anything after the symbol is dropped. A part that does not look like a family, an exchange
    or a symbol becomes `other`, so a malformed key cannot smuggle an id into the label.
    """
    # The label reads at most the first four parts. Caching by those alone keeps one entry per
    # symbol and lock family: keyed by the full key, every grid level and every canceled order id
    # would add an entry, and the process would grow for hours until the cache filled.
    parts = key.split(":", 4)
    return _label(key if len(parts) < 5 else ":".join(parts[:4]))


@lru_cache(maxsize=1024)
def _label(head: str) -> str:
    parts = head.split(":")
    family = parts[0] if _FAMILY.fullmatch(parts[0]) else OTHER
    if len(parts) == 1:
        return family
    if len(parts) == 2:
        return f"{family}:{parts[1] if _SYMBOL.fullmatch(parts[1]) else OTHER}"
    exchange = parts[1] if _EXCHANGE.fullmatch(parts[1]) else OTHER
    symbol = parts[2]
    if len(parts) > 3 and "/" in symbol and _SETTLE.fullmatch(parts[3]):
        symbol = f"{symbol}:{parts[3]}"
    if not _SYMBOL.fullmatch(symbol):
        symbol = OTHER
    return f"{family}:{exchange}:{symbol}"


# --- recording (called by locking.base.LockService) -----------------------------------------------

# Full keys whose metric children are kept at hand (NopLock's hot path): enough for every lock a
# process holds at once, a few hundred at most.
KEY_CACHE_SIZE = 512


@lru_cache(maxsize=4096)
def _acquire_child(label: str, status: str) -> Any:
    return ACQUIRE_TOTAL.labels(key=label, status=status)


@lru_cache(maxsize=4096)
def _hold_child(label: str) -> Any:
    return HOLD_DURATION.labels(key=label)


@lru_cache(maxsize=4096)
def _conflict_child(label: str) -> Any:
    return CONFLICT_TOTAL.labels(key=label)


@lru_cache(maxsize=KEY_CACHE_SIZE)
def key_children(key: str) -> tuple[Any, Any]:
    """The success counter and the hold histogram of a full lock key: the two a free acquire and
    its release touch. Cached by full key so that a release finds what its acquire looked up; the
    cache is small because keys with a grid level or an order id keep coming, and each entry is
    memory held until it is evicted."""
    label = metric_label(key)
    return _acquire_child(label, "success"), _hold_child(label)


def record_acquire(label: str, status: str) -> None:
    _acquire_child(label, status).inc()


def record_hold(label: str, seconds: float) -> None:
    _hold_child(label).observe(max(seconds, 0.0))


def record_conflict(label: str) -> None:
    _conflict_child(label).inc()


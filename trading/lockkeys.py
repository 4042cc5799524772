"""The lock keys of the trading paths and their TTLs in seconds.

Order placement locks one grid level and tries once; cancel locks one order and tries once;
reconcile locks one symbol and waits up to its TTL. The lock service itself gives these keys no
meaning; `locking.metrics.metric_label()` reads any key of the form `<family>:<exchange>:<symbol>...`.
"""
from __future__ import annotations

ORDER_LOCK_TTL = 5
CANCEL_LOCK_TTL = 3
RECONCILE_LOCK_TTL = 30


def order_lock_key(exchange: str, symbol: str, level: int) -> str:
    return f"order:{exchange}:{symbol}:level:{level}"


def cancel_lock_key(exchange: str, symbol: str, order_id: str | int) -> str:
    return f"cancel:{exchange}:{symbol}:order:{order_id}"


def reconcile_lock_key(exchange: str, symbol: str) -> str:
    return f"reconcile:{exchange}:{symbol}"

"""Prometheus metrics (exact names, bounded labels) and lock events, for both backends."""
from __future__ import annotations

import importlib
import threading
import time
from typing import Iterator

import pytest
from prometheus_client import REGISTRY, generate_latest

import locking.metrics
from locking import base
from locking.base import LockBackendUnavailable, LockBusy, LockEventMessage, LockService, NotOwned
from locking.metrics import metric_label
from locking.redis_lock import RedisLock
from tests.locking.conftest import free_port, granted

LABEL = "order:binance:BTC/USDT"


def sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


@pytest.mark.parametrize("key, label", [
    ("order:binance:BTC/USDT:level:-12", "order:binance:BTC/USDT"),
    ("order:binance:BTC/USDT:level:7", "order:binance:BTC/USDT"),
    ("cancel:binance:BTC/USDT:order:123", "cancel:binance:BTC/USDT"),
    ("cancel:binance:ETH/USDT:order:8f2c-11", "cancel:binance:ETH/USDT"),
    ("reconcile:binance:BTC/USDT", "reconcile:binance:BTC/USDT"),
    ("order:okx:BTC/USDT:USDT:level:3", "order:okx:BTC/USDT:USDT"),
    ("order:Binance:ETHUSDT:1850", "order:Binance:ETHUSDT"),  # the original program's key shape
    ("cancel:binance:123456789", "cancel:binance:other"),  # an order id where the symbol belongs
    ("order:binance:61000.5:level:1", "order:binance:other"),  # a price where the symbol belongs
    ("lease:BTC/USDT", "lease:BTC/USDT"),
    ("reconcile", "reconcile"),
    ("Weird Family:x:y", "other:x:y"),
])
def test_metric_label_keeps_family_exchange_and_symbol_only(key: str, label: str) -> None:
    assert metric_label(key) == label


def test_new_levels_and_order_ids_do_not_grow_the_label_caches() -> None:
    """A bot keeps locking new grid levels and canceling new order ids for as long as it runs;
    the label lookups must stay the same size, or the process grows by every key it has seen."""
    from locking.nop import NopLock

    metrics = locking.metrics
    metrics._label.cache_clear()
    metrics.key_children.cache_clear()
    locks = NopLock()
    for n in range(3 * metrics.KEY_CACHE_SIZE):
        locks.unlock(granted(locks.try_lock(f"order:binance:BTC/USDT:level:{n - 700}", 5)))
        locks.unlock(granted(locks.try_lock(f"cancel:binance:BTC/USDT:order:{n}", 5)))
        assert metric_label(f"cancel:binance:BTC/USDT:order:x{n}") == "cancel:binance:BTC/USDT"
    assert metrics._label.cache_info().currsize == 2  # one per lock family of the symbol
    assert metrics.key_children.cache_info().currsize == metrics.KEY_CACHE_SIZE


def test_metric_names_are_exactly_the_seeds() -> None:
    from locking.nop import NopLock

    locks = NopLock()
    key = "order:binance:BTC/USDT:level:1"
    grant = granted(locks.try_lock(key, 5))
    thread = threading.Thread(target=lambda: locks.try_lock(key, 5))
    thread.start()
    thread.join(5)
    locks.unlock(grant)
    exposition = generate_latest(REGISTRY).decode()
    for line in (
        'quantmesh_lock_acquire_total{key="order:binance:BTC/USDT",status="success"}',
        'quantmesh_lock_hold_duration_seconds_count{key="order:binance:BTC/USDT"}',
        'quantmesh_lock_conflict_total{key="order:binance:BTC/USDT"}',
    ):
        assert line in exposition
    assert "level" not in "".join(line for line in exposition.splitlines() if "quantmesh_lock" in line)


def test_importing_the_metrics_module_again_is_safe() -> None:
    counter = locking.metrics.ACQUIRE_TOTAL
    reloaded = importlib.reload(locking.metrics)
    assert reloaded.ACQUIRE_TOTAL is counter
    assert reloaded.HOLD_DURATION is REGISTRY._names_to_collectors["quantmesh_lock_hold_duration_seconds"]


def test_acquire_outcomes_are_counted(locks: LockService, key: str) -> None:
    label = metric_label(key)
    assert label == LABEL
    before = {status: sample("quantmesh_lock_acquire_total", key=label, status=status)
              for status in ("success", "busy", "timeout")}
    conflicts = sample("quantmesh_lock_conflict_total", key=label)
    holds = sample("quantmesh_lock_hold_duration_seconds_count", key=label)

    grant = granted(locks.try_lock(key, 5))
    other: dict = {}

    def contend() -> None:
        other["busy"] = locks.try_lock(key, 5)
        try:
            locks.lock(key, 5, timeout=0.05)
        except LockBusy:
            other["timeout"] = True

    thread = threading.Thread(target=contend)
    thread.start()
    thread.join(5)
    locks.unlock(grant)

    assert other == {"busy": None, "timeout": True}
    assert sample("quantmesh_lock_acquire_total", key=label, status="success") == before["success"] + 1
    assert sample("quantmesh_lock_acquire_total", key=label, status="busy") == before["busy"] + 1
    assert sample("quantmesh_lock_acquire_total", key=label, status="timeout") == before["timeout"] + 1
    assert sample("quantmesh_lock_conflict_total", key=label) == conflicts + 2
    assert sample("quantmesh_lock_hold_duration_seconds_count", key=label) == holds + 1


def test_backend_errors_are_counted(namespace: str) -> None:
    key = "reconcile:binance:SOL/USDT"
    before = sample("quantmesh_lock_acquire_total", key=key, status="error")
    locks = RedisLock(f"redis://127.0.0.1:{free_port()}/0", namespace=namespace)
    with pytest.raises(LockBackendUnavailable):
        locks.try_lock(key, 5)
    locks.close()
    assert sample("quantmesh_lock_acquire_total", key=key, status="error") == before + 1


def test_metrics_can_be_turned_off(redis_url: str, namespace: str, raw_redis) -> None:
    key = "reconcile:binance:DOGE/USDT"
    locks = RedisLock(redis_url, namespace=namespace, record_metrics=False)
    locks.unlock(granted(locks.try_lock(key, 5)))
    locks.close()
    assert sample("quantmesh_lock_acquire_total", key=key, status="success") == 0


@pytest.fixture
def events() -> Iterator[list[LockEventMessage]]:
    received: list[LockEventMessage] = []
    base.set_event_sink(received.append)
    yield received
    base.set_event_sink(None)


def test_events_reach_the_sink(locks: LockService, key: str, events: list[LockEventMessage]) -> None:
    grant = granted(locks.try_lock(key, 0.1))

    def contend() -> None:
        assert locks.try_lock(key, 5) is None
        with pytest.raises(LockBusy):
            locks.lock(key, 5, timeout=0.01)

    thread = threading.Thread(target=contend)
    thread.start()
    thread.join(5)
    assert [event.kind for event in events] == ["conflict", "timeout"]

    time.sleep(0.12)  # let the lease run out
    with pytest.raises(NotOwned):
        locks.unlock(grant)
    lost = events[-1]
    assert (lost.kind, lost.key, lost.token, lost.owner) == ("lost", key, grant.token, grant.owner)


def test_a_failing_sink_does_not_break_locking(locks: LockService, key: str) -> None:
    def broken(event: LockEventMessage) -> None:
        raise RuntimeError("sink is down")

    base.set_event_sink(broken)
    try:
        grant = granted(locks.try_lock(key, 5))
        thread = threading.Thread(target=lambda: locks.try_lock(key, 5))
        thread.start()
        thread.join(5)
        assert locks.unlock(grant) is True
    finally:
        base.set_event_sink(None)


def test_record_event_is_there_for_fenced_writes(events: list[LockEventMessage]) -> None:
    base.record_event(base.FENCED, "order:binance:BTC/USDT:level:3", token=7, detail="token 7 < stored 9")
    assert events[0].kind == "fenced" and events[0].token == 7

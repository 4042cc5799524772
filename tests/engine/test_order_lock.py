"""The order lock on the order path, against the simulator over real HTTP, with the NopLock and a
real Redis: the engine asks for the lock, writes the intent while the answer is on its way, and
sends only once the answer says granted. A refused or failed lock sends nothing and withdraws the
intent; a granted one is free again once the tick's orders are at the exchange."""
from __future__ import annotations

import uuid
from functools import partial
from typing import Iterator

import pytest
import redis

from locking.base import LockService
from locking.nop import NopLock
from locking.redis_lock import RedisLock
from tests.locking.proxy import RedisProxy
from tests.locking.test_api import as_other_owner
from trading.engine import TickResult
from trading.lockkeys import ORDER_LOCK_TTL, order_lock_key
from trading.models import Order

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(params=["nop", "redis"])
def backends(request: pytest.FixtureRequest) -> Iterator[tuple[LockService, LockService]]:
    """The engine's lock service, and one that another owner takes the same keys with."""
    locks: LockService
    if request.param == "nop":
        locks = NopLock()
        yield locks, locks  # the other owner is another thread of the same service
        locks.close()
        return
    url = request.getfixturevalue("redis_url")
    namespace = f"qmtest:{uuid.uuid4().hex[:10]}:"
    locks = RedisLock(url, namespace=namespace, instance_id="engine")
    other = RedisLock(url, namespace=namespace, instance_id="other")
    yield locks, other
    locks.close()
    other.close()
    client = redis.Redis.from_url(url)
    for name in client.scan_iter(f"{namespace}*"):
        client.delete(name)
    client.close()


def first_wanted(engine):
    return engine.plan(engine.last_price, engine.ledger.live_orders()).orders[0]


def test_a_busy_order_lock_sends_nothing_and_withdraws_the_intent(sim, make_engine, backends) -> None:
    locks, other = backends
    engine = make_engine(locks=locks)
    want = first_wanted(engine)
    key = order_lock_key(engine.exchange_id, engine.market, want.level)
    held = as_other_owner(lambda: other.try_lock(key, ORDER_LOCK_TTL))
    assert held is not None

    result = TickResult()
    assert engine.place(want, result) is None
    assert result.conflicts == 1 and result.placed == []
    assert sim.engine.ledger() == []  # nothing reached the exchange
    withdrawn = Order.objects.get(level=want.level, side=want.side)
    assert withdrawn.status == "not_placed" and withdrawn.active_slot is None
    assert "not sent: order lock not granted" in withdrawn.events.get(to_status="not_placed").note

    as_other_owner(lambda: other.unlock(held))
    placed = engine.place(want, TickResult())  # the next try places it, under the next client id
    assert placed is not None and placed.status == "open" and placed.client_order_id.endswith("-1")
    assert [o["clientOrderId"] for o in sim.engine.ledger()] == [placed.client_order_id]


def test_the_order_locks_are_free_again_once_the_ticks_orders_are_placed(sim, make_engine, backends) -> None:
    locks, other = backends
    engine = make_engine(locks=locks)
    live = engine.ledger.live_orders()
    plan = engine.plan(engine.last_price, live).orders
    assert len(plan) >= 2  # so that a release also travels with the next order's request
    engine.place_wanted(engine.last_price, TickResult(), live)
    placed = Order.objects.filter(status="open")
    assert placed.count() == len(plan)
    for order in placed:
        # Free at once: taken without waiting, long before the lock's TTL.
        key = order_lock_key(engine.exchange_id, engine.market, order.level)
        grant = as_other_owner(partial(other.try_lock, key, ORDER_LOCK_TTL))
        assert grant is not None, f"order lock of level {order.level} still held"
        as_other_owner(partial(other.unlock, grant))


def test_a_lost_reply_releases_the_order_lock_before_asking_the_exchange(sim, make_engine, backends) -> None:
    """Asking the exchange by client id may take as long as the order lock's TTL: the release the
    order path deferred goes out first, instead of outliving the lock and being logged as lost."""
    locks, other = backends
    engine = make_engine(locks=locks)
    want = first_wanted(engine)
    sim.drop_next(count=1)  # the order is placed, its reply lost: the engine asks by client id
    order = engine.place(want, TickResult())
    assert order is not None and order.status == "open"
    key = order_lock_key(engine.exchange_id, engine.market, want.level)
    grant = as_other_owner(lambda: other.try_lock(key, ORDER_LOCK_TTL))
    assert grant is not None
    as_other_owner(lambda: other.unlock(grant))


def test_a_lock_answer_lost_in_a_partition_sends_nothing(sim, make_engine, redis_url) -> None:
    options = redis.connection.parse_url(redis_url)
    proxy = RedisProxy(options.get("host", "127.0.0.1"), options.get("port", 6379))
    locks = RedisLock(proxy.url(options.get("db", 0)), namespace=f"qmtest:{uuid.uuid4().hex[:10]}:")
    try:
        engine = make_engine(locks=locks)
        want = first_wanted(engine)
        warm_up = locks.try_lock("warm-up", 1)  # connected through the proxy
        assert warm_up is not None
        locks.unlock(warm_up)
        proxy.mode = "blackhole"  # the acquire is written; no answer ever comes back
        result = TickResult()
        assert engine.place(want, result) is None
        assert result.lock_errors == 1 and result.conflicts == 0
        assert sim.engine.ledger() == []
        assert Order.objects.get(level=want.level, side=want.side).status == "not_placed"

        proxy.mode = "pass"
        assert engine.place(want, TickResult()).status == "open"
        assert len(sim.engine.ledger()) == 1
    finally:
        locks.close()
        proxy.close()

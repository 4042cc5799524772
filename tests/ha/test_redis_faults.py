"""F5/F7 with real processes: the lock server is flushed, killed and restarted under a running
bot. While Redis is down no order goes out and nothing crashes; when it is back trading resumes,
and fencing tokens never go backwards (they are floored at the database's fence)."""
import time
from decimal import Decimal

import pytest

from tests.ha.harness import Cluster, RedisServer, duplicate_slot_orders, repeated_client_ids, stale_writes
from tests.procs import wait_for
from trading.models import Order, Symbol

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow, pytest.mark.ha]
D = Decimal


def live_sells():
    return Order.objects.filter(side="sell", status__in=["open", "partially_filled"]).count()


def test_redis_down_flushed_and_restarted(market, tmp_path):
    sim, symbol = market
    server = RedisServer(tmp_path)
    server.start()
    cluster = Cluster(tmp_path, server.url, lease_ttl_ms=1500)
    bot = cluster.start("bot-a")
    try:
        wait_for(lambda: Order.objects.filter(status="open", side="buy").count() == 2, what="first buys",
                 log_path=cluster.log("bot-a"))
        token_before = Symbol.objects.get(pk=symbol.pk).fence_token

        # F5: the lock data vanishes under a holder. It must notice, stop, and take the lease again
        # with a token above the database's fence.
        server.client().flushall()
        wait_for(lambda: Symbol.objects.get(pk=symbol.pk).owner_token > token_before, timeout=30,
                 what="lease re-taken after FLUSHALL with a higher token", log_path=cluster.log("bot-a"))

        # F7: Redis goes away. A buy fills meanwhile; its sell must not go out until Redis is back.
        server.kill()
        orders_before = len(sim.engine.ledger())
        sim.engine.set_price("BTC/USDT", D("59800"))
        observe_until = time.monotonic() + 3 * 1.5  # three lease TTLs of outage
        while time.monotonic() < observe_until:
            assert len(sim.engine.ledger()) == orders_before, "an order went out while the lock server was down"
            assert bot.poll() is None, "the bot died while Redis was down"
            time.sleep(0.05)
        server.start()  # an empty Redis: counters restart from zero, the database's fence floors them
        wait_for(lambda: live_sells() == 1, timeout=30, what="trading resumed: the sell of the filled buy placed",
                 log_path=cluster.log("bot-a"))
    finally:
        cluster.stop_all()
        server.kill()
    ledger = sim.engine.ledger()
    assert repeated_client_ids(ledger) == []
    assert duplicate_slot_orders(ledger, {}) == []
    assert stale_writes() == []
    assert Symbol.objects.get(pk=symbol.pk).fence_token > token_before

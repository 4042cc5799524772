"""F3/F4: an instance freezes (SIGSTOP) after writing an order intent and before sending it,
past its lease TTL; another instance takes the symbol over. When the frozen one resumes, its
stale request is refused (signed before the claim, so the exchange's receive window has
passed) and its ledger writes are refused by the fence. The same run with the protection
switched off (a test-only setting) produces a duplicate order, so the check can fail."""
import os
import signal
from decimal import Decimal

import pytest

from locking.models import LockEvent
from tests.ha.harness import Cluster, duplicate_slot_orders, process_state, repeated_client_ids
from tests.procs import wait_for
from trading.models import Order

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow, pytest.mark.redis, pytest.mark.ha]
D = Decimal


def run_scenario(sim, cluster: Cluster):
    """A freezes right before its first send; B takes over; A resumes after B placed that slot."""
    a = cluster.start("bot-a", QM_TEST_PAUSE_AT="before_send")
    wait_for(lambda: process_state(a.pid) == "T" and Order.objects.filter(instance_id="bot-a").exists(),
             what="bot-a frozen right after writing its first intent", log_path=cluster.log("bot-a"))
    frozen = Order.objects.get(instance_id="bot-a")
    assert frozen.status == "pending"
    cluster.start("bot-b")
    wait_for(
        lambda: Order.objects.filter(instance_id="bot-b", level=frozen.level, side=frozen.side,
                                     status__in=["open", "filled"]).exists(),
        timeout=60, what="bot-b placed the frozen intent's slot", log_path=cluster.log("bot-b"),
    )
    os.killpg(a.pid, signal.SIGCONT)
    # A sends its stale request and tries to record the answer, then loses its symbol.
    wait_for(lambda: "stopped trading" in cluster.log("bot-a").read_text() or "fence" in cluster.log("bot-a").read_text()
             or len([o for o in sim.engine.ledger() if o["clientOrderId"] == frozen.client_order_id]) > 0,
             timeout=30, what="bot-a's resumed send settled", log_path=cluster.log("bot-a"))
    wait_for(lambda: "lease lost" in cluster.log("bot-a").read_text() or "stopped trading" in cluster.log("bot-a").read_text(),
             timeout=30, what="bot-a gave the symbol up", log_path=cluster.log("bot-a"))
    return frozen


def test_stale_instance_is_fenced_and_sends_nothing(market, redis_url, tmp_path):
    sim, _ = market
    cluster = Cluster(tmp_path, redis_url)
    try:
        frozen = run_scenario(sim, cluster)
    finally:
        cluster.stop_all()
    ledger = sim.engine.ledger()
    assert frozen.client_order_id not in {o["clientOrderId"] for o in ledger}, "the stale request executed"
    assert duplicate_slot_orders(ledger, {}) == []
    assert repeated_client_ids(ledger) == []
    frozen.refresh_from_db()
    assert frozen.status == "not_placed"  # resolved by bot-b after the request window
    assert LockEvent.objects.filter(kind="fenced", instance_id="bot-a").exists()


def test_control_without_the_protection_the_stale_order_duplicates(market, redis_url, tmp_path):
    sim, _ = market
    cluster = Cluster(tmp_path, redis_url, unprotected=True)
    try:
        frozen = run_scenario(sim, cluster)
    finally:
        cluster.stop_all()
    ledger = sim.engine.ledger()
    assert frozen.client_order_id in {o["clientOrderId"] for o in ledger}, "the stale request should have executed"
    assert frozen.client_order_id in duplicate_slot_orders(ledger, {})

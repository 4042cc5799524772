"""When the control loop of a multi-instance bot looks for leases again.

It renews every third of the lease TTL. Waiting that long after a dead peer's lease expired would
let a takeover take up to TTL + TTL / 3, more than the TTL + 2 s promised once the TTL is above
6 s, so the loop also wakes just after a peer's heartbeat goes stale, and soon again while a lease
it should hold is still taken. These tests read the delay the lease cycle asks for; the
end-to-end takeover time is measured in tests/ha/test_leases.py and bench/bench_scale.py.
"""
from __future__ import annotations

import threading
from datetime import timedelta

import pytest
from django.utils import timezone

from locking.base import LockBackendUnavailable
from locking.nop import NopLock
from tests.factories import make_symbol
from trading.leases import lease_key
from trading.models import BotInstance
from trading.runner import LEASE_RETRY_SECONDS, STALE_MARGIN_SECONDS, Bot, BotOptions, register_instance

TTL_MS = 9000


def bot(symbols, locks) -> Bot:
    options = BotOptions(instance_id="me", lock_backend="redis", lease_ttl_ms=TTL_MS)
    bot = Bot(symbols, locks, options, out=lambda line: None)
    bot.instance = register_instance("me", "redis")
    return bot


def peer(name: str, seconds_ago: float) -> None:
    BotInstance.objects.create(instance_id=name, host="elsewhere", pid=1, version="test", lock_backend="redis",
                               last_heartbeat=timezone.now() - timedelta(seconds=seconds_ago))


@pytest.mark.django_db
def test_wakes_just_after_the_first_peer_heartbeat_goes_stale():
    peer("fresh", 1.0)
    peer("older", 4.0)  # stale 9 s after its heartbeat: 5 s from now
    peer("dead", 30.0)  # already stale: no longer a reason to wake
    delay = bot([], NopLock())._lease_cycle()
    assert 5.0 - 0.5 < delay <= 5.0 + STALE_MARGIN_SECONDS


@pytest.mark.django_db
def test_with_no_peer_the_cycle_keeps_its_own_pace():
    assert bot([], NopLock())._lease_cycle() == float("inf")


@pytest.mark.django_db
def test_a_lease_still_held_elsewhere_is_tried_again_soon():
    symbol = make_symbol()
    locks = NopLock()
    key = lease_key(symbol.account.exchange_id, symbol.symbol)
    holder = threading.Thread(target=locks.try_lock, args=(key, 60))  # another owner: another thread
    holder.start()
    holder.join()
    subject = bot([symbol], locks)
    assert subject._lease_cycle() == LEASE_RETRY_SECONDS
    assert subject.runs == {}  # nothing started without the lease


class UnreachableLock(NopLock):
    """A lock backend that cannot be reached: every acquire fails as RedisLock's does then."""

    def try_lock(self, key, ttl, *, floor=0):
        raise LockBackendUnavailable(f"lock acquire {key!r}: unreachable")


@pytest.mark.django_db
def test_a_failing_lock_backend_keeps_the_cycles_own_pace():
    subject = bot([make_symbol()], UnreachableLock())
    assert subject._lease_cycle() == float("inf")  # not five tries (and warnings) a second
    assert subject.runs == {}

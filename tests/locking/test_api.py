"""The lock API, run against NopLock and RedisLock alike (an owner is one thread of a service)."""
from __future__ import annotations

import threading
import time
from decimal import Decimal
from typing import Callable, TypeVar

import pytest

from locking.base import AlreadyHeld, Grant, LockBusy, LockError, LockService, NotOwned, Seconds
from locking.nop import NopLock
from tests.locking.conftest import granted, in_thread, is_waiting, wait_until

T = TypeVar("T")


def as_other_owner(fn: Callable[[], T]) -> T:
    """Run fn in another thread, i.e. as another owner of the same service; return its result."""
    thread, box = in_thread(fn)
    thread.join(10)
    if "error" in box:
        raise box["error"]
    return box["result"]


def wait_past(grant: Grant) -> None:
    """Let the grant's TTL run out (the point of the test is an expired lease)."""
    time.sleep(grant.ttl_ms / 1000 + 0.02)


def test_try_lock_returns_a_grant(locks: LockService, key: str) -> None:
    before = time.monotonic()
    grant = locks.try_lock(key, 1.5)
    assert grant is not None
    assert grant.key == key
    assert grant.owner == locks.owner_id()
    assert grant.token >= 1
    assert grant.ttl_ms == 1500
    assert before <= grant.acquired <= time.monotonic()
    assert grant.acquired + 1.4 < grant.deadline <= grant.acquired + 1.5
    assert grant.is_valid()
    assert 1.4 < grant.remaining() <= 1.5
    assert locks.unlock(grant) is True


def test_grant_is_frozen(locks: LockService, key: str) -> None:
    grant = granted(locks.try_lock(key, 1))
    with pytest.raises(AttributeError):
        grant.token = 99  # type: ignore[misc]
    locks.unlock(grant)


def test_try_lock_on_a_held_key_returns_none(locks: LockService, key: str) -> None:
    grant = granted(locks.try_lock(key, 5))
    assert as_other_owner(lambda: locks.try_lock(key, 5)) is None
    locks.unlock(grant)
    other = as_other_owner(lambda: locks.try_lock(key, 5))
    assert other is not None and other.token > grant.token
    locks.unlock(other)


def test_same_owner_asking_again_is_an_error_not_a_deadlock(locks: LockService, key: str) -> None:
    grant = granted(locks.try_lock(key, 5))
    with pytest.raises(AlreadyHeld):
        locks.try_lock(key, 5)
    started = time.monotonic()
    with pytest.raises(AlreadyHeld):
        locks.lock(key, 5, timeout=5)
    assert time.monotonic() - started < 0.5
    with pytest.raises(AlreadyHeld):
        with locks.held(key, 5):
            pass
    assert locks.unlock(grant) is True
    locks.unlock(granted(locks.try_lock(key, 5)))


def test_tokens_strictly_increase_per_key(locks: LockService, key: str) -> None:
    tokens = []
    for _ in range(20):
        grant = granted(locks.try_lock(key, 1))
        tokens.append(grant.token)
        locks.unlock(grant)
    assert tokens == sorted(set(tokens))


def test_ttl_in_seconds_as_int_float_or_decimal(locks: LockService, key: str) -> None:
    cases: list[tuple[Seconds, int]] = [
        (2, 2000), (0.25, 250), (Decimal("0.3333"), 334), (0.0001, 1), (Decimal("1.5"), 1500),
    ]
    for ttl, ms in cases:
        grant = granted(locks.try_lock(key, ttl))
        assert grant.ttl_ms == ms, ttl
        locks.unlock(grant)


@pytest.mark.parametrize("ttl", [0, -1, Decimal("-0.5"), float("nan"), float("inf")])
def test_bad_ttl_is_refused(locks: LockService, key: str, ttl: object) -> None:
    with pytest.raises(ValueError):
        locks.try_lock(key, ttl)  # type: ignore[arg-type]


@pytest.mark.parametrize("ttl", ["5", None, True])
def test_ttl_must_be_a_number(locks: LockService, key: str, ttl: object) -> None:
    with pytest.raises(TypeError):
        locks.try_lock(key, ttl)  # type: ignore[arg-type]


@pytest.mark.parametrize("bad_key", ["", " padded ", None])
def test_bad_key_is_refused(locks: LockService, bad_key: object) -> None:
    with pytest.raises(ValueError):
        locks.try_lock(bad_key, 1)  # type: ignore[arg-type]


def test_unlock_by_another_thread_with_the_grant_works(locks: LockService, key: str) -> None:
    grant = granted(locks.try_lock(key, 5))
    assert as_other_owner(lambda: locks.unlock(grant)) is True
    again = locks.try_lock(key, 5)
    assert again is not None
    locks.unlock(again)


def test_double_unlock_is_not_owned(locks: LockService, key: str) -> None:
    grant = granted(locks.try_lock(key, 5))
    locks.unlock(grant)
    with pytest.raises(NotOwned) as caught:
        locks.unlock(grant)
    assert caught.value.holder_token is None


def test_extend_replaces_the_ttl(locks: LockService, key: str) -> None:
    grant = granted(locks.try_lock(key, 1))
    longer = locks.extend(grant, 3)
    assert (longer.token, longer.key, longer.owner) == (grant.token, grant.key, grant.owner)
    assert longer.ttl_ms == 3000
    assert longer.deadline > grant.deadline + 1.5
    shorter = locks.extend(longer, Decimal("0.5"))  # replace, not add
    assert shorter.ttl_ms == 500
    assert shorter.deadline < longer.deadline
    assert locks.unlock(shorter) is True


def test_held_yields_the_grant_and_releases(locks: LockService, key: str) -> None:
    with locks.held(key, 5) as grant:
        assert grant.key == key and grant.is_valid()
        assert as_other_owner(lambda: locks.try_lock(key, 5)) is None
    after = as_other_owner(lambda: locks.try_lock(key, 5))
    assert after is not None
    locks.unlock(after)


def test_held_releases_when_the_block_raises(locks: LockService, key: str) -> None:
    with pytest.raises(ZeroDivisionError):
        with locks.held(key, 5, timeout=1):
            raise ZeroDivisionError("inside the block")
    grant = locks.try_lock(key, 5)
    assert grant is not None
    locks.unlock(grant)


def test_held_on_a_busy_key_raises_lock_busy(locks: LockService, key: str) -> None:
    grant = granted(as_other_owner(lambda: locks.try_lock(key, 5)))
    with pytest.raises(LockBusy):
        with locks.held(key, 5):
            pytest.fail("must not enter")
    started = time.monotonic()
    with pytest.raises(LockBusy):
        with locks.held(key, 5, timeout=0.2):
            pytest.fail("must not enter")
    assert time.monotonic() - started >= 0.2
    locks.unlock(grant)


def test_held_raises_not_owned_when_the_lease_was_lost(locks: LockService, key: str) -> None:
    with pytest.raises(NotOwned):
        with locks.held(key, 0.1) as grant:
            wait_past(grant)
            taker = granted(as_other_owner(lambda: locks.try_lock(key, 5)))
    locks.unlock(taker)


def test_lock_times_out_with_lock_busy(locks: LockService, key: str) -> None:
    holder = granted(as_other_owner(lambda: locks.try_lock(key, 10)))
    started = time.monotonic()
    with pytest.raises(LockBusy) as caught:
        locks.lock(key, 5, timeout=0.3)
    elapsed = time.monotonic() - started
    assert caught.value.key == key
    assert 0.3 <= elapsed < 0.3 + 0.25
    locks.unlock(holder)


def test_lock_with_zero_timeout_tries_once(locks: LockService, key: str) -> None:
    holder = granted(as_other_owner(lambda: locks.try_lock(key, 10)))
    with pytest.raises(LockBusy):
        locks.lock(key, 5, timeout=0)
    locks.unlock(holder)
    grant = locks.lock(key, 5, timeout=0)
    locks.unlock(grant)


def test_waiter_is_woken_by_release_not_by_ttl(locks: LockService, key: str, raw) -> None:
    holder = granted(locks.try_lock(key, 10))
    waiter, box = in_thread(lambda: locks.lock(key, 5, timeout=8))
    wait_until(lambda: is_waiting(locks, raw), what="the waiter to block")
    released = time.monotonic()
    locks.unlock(holder)
    waiter.join(5)
    grant = box["result"]
    assert grant.token > holder.token
    assert box["at"] - released < 0.1
    locks.unlock(grant)


def test_waiter_gets_the_lock_when_the_holder_ttl_runs_out(locks: LockService, key: str) -> None:
    holder = granted(as_other_owner(lambda: locks.try_lock(key, 0.3)))  # never released
    grant = locks.lock(key, 5, timeout=3)
    elapsed = time.monotonic() - holder.acquired
    assert grant.token > holder.token
    assert 0.3 - 0.005 <= elapsed < 0.3 + 0.2
    locks.unlock(grant)


def test_threads_exclude_each_other(locks: LockService, key: str) -> None:
    state = {"value": 0, "inside": 0, "max_inside": 0}
    tokens: list[int] = []

    def work() -> None:
        for _ in range(100):
            with locks.held(key, 5, timeout=10) as grant:
                state["inside"] += 1
                state["max_inside"] = max(state["max_inside"], state["inside"])
                value = state["value"]
                time.sleep(0)  # let another thread run between read and write
                state["value"] = value + 1
                tokens.append(grant.token)
                state["inside"] -= 1

    threads = [threading.Thread(target=work) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert state["value"] == 800
    assert state["max_inside"] == 1
    assert tokens == sorted(tokens) and len(set(tokens)) == 800


def test_stale_release_is_not_owned_and_leaves_the_new_holder_alone(locks: LockService, key: str) -> None:
    """F10: A's TTL runs out, B acquires, A releases with its stale grant."""
    a = granted(locks.try_lock(key, 0.1))
    wait_past(a)
    b = as_other_owner(lambda: locks.try_lock(key, 5))
    assert b is not None and b.token > a.token
    with pytest.raises(NotOwned) as caught:
        locks.unlock(a)
    assert caught.value.holder_token == b.token
    assert as_other_owner(lambda: locks.try_lock(key, 5)) is None  # B still holds it
    assert locks.unlock(b) is True


def test_foreign_grant_release_and_extend_are_not_owned(locks: LockService, key: str) -> None:
    b = granted(as_other_owner(lambda: locks.try_lock(key, 5)))
    forged_token = b._replace(token=b.token + 1)
    forged_owner = b._replace(owner="someone-else")
    for forged in (forged_token, forged_owner):
        with pytest.raises(NotOwned):
            locks.unlock(forged)
        with pytest.raises(NotOwned):
            locks.extend(forged, 30)
    assert locks.unlock(b) is True


def test_extend_after_expiry_is_not_owned(locks: LockService, key: str) -> None:
    """F11, without and with a new holder."""
    a = granted(locks.try_lock(key, 0.1))
    wait_past(a)
    with pytest.raises(NotOwned) as caught:
        locks.extend(a, 5)
    assert caught.value.holder_token is None

    a = granted(locks.try_lock(key, 0.1))
    wait_past(a)
    b = granted(as_other_owner(lambda: locks.try_lock(key, 5)))
    with pytest.raises(NotOwned) as caught:
        locks.extend(a, 5)
    assert caught.value.holder_token == b.token
    assert locks.unlock(b) is True


def test_grant_is_invalid_after_its_deadline(locks: LockService, key: str) -> None:
    grant = granted(locks.try_lock(key, 0.1))
    assert grant.is_valid()
    time.sleep(max(0.0, grant.deadline - time.monotonic()) + 0.005)
    assert not grant.is_valid()
    assert grant.remaining() == 0


def test_asking_again_after_the_deadline_is_allowed(locks: LockService, key: str) -> None:
    grant = granted(locks.try_lock(key, 0.1))
    wait_past(grant)
    again = locks.try_lock(key, 1)
    assert again is not None and again.token > grant.token
    locks.unlock(again)


def test_floor_keeps_tokens_above_the_callers_fence(locks: LockService, key: str) -> None:
    grant = granted(locks.try_lock(key, 1, floor=1000))
    assert grant.token > 1000
    locks.unlock(grant)
    grant = granted(locks.try_lock(key, 1, floor=5000))
    assert grant.token > 5000
    locks.unlock(grant)
    later = granted(locks.try_lock(key, 1))  # no floor: the tokens still never go back
    assert later.token > grant.token
    locks.unlock(later)
    last = granted(locks.try_lock(key, 1, floor=10))  # a floor below the last token does not lower it
    assert last.token > later.token
    locks.unlock(last)


@pytest.mark.parametrize("floor", [-1, 2**53, True, 1.5])
def test_bad_floor_is_refused(locks: LockService, key: str, floor: object) -> None:
    with pytest.raises(ValueError):
        locks.try_lock(key, 1, floor=floor)  # type: ignore[arg-type]


def test_closed_service_refuses_work(locks: LockService, key: str) -> None:
    locks.close()
    locks.close()  # idempotent
    with pytest.raises(LockError):
        locks.try_lock(key, 1)


def test_request_answers_what_try_lock_would(locks: LockService, key: str) -> None:
    pending = locks.request(key, 5)
    grant = pending.wait()
    assert grant is not None and grant.key == key and grant.owner == locks.owner_id()
    assert pending.wait() is grant  # the answer is kept
    assert as_other_owner(lambda: locks.try_lock(key, 5)) is None  # the key is really held
    with pytest.raises(AlreadyHeld):
        locks.request(key, 5)
    locks.unlock(grant)


def test_request_on_a_held_key_answers_none(locks: LockService, key: str) -> None:
    held = granted(as_other_owner(lambda: locks.try_lock(key, 5)))
    assert locks.request(key, 5).wait() is None
    mine = as_other_owner(lambda: locks.request(key + ":free", 5).wait())
    assert mine is not None and mine.key == key + ":free"
    as_other_owner(lambda: locks.unlock(held))
    as_other_owner(lambda: locks.unlock(mine))


def test_other_lock_calls_may_come_between_request_and_wait(locks: LockService, key: str) -> None:
    first = granted(locks.try_lock(key + ":a", 5))
    pending = locks.request(key, 5)
    locks.unlock_nowait(first)           # the thread keeps using the service meanwhile
    second = locks.try_lock(key + ":b", 5)
    grant = pending.wait()
    assert grant is not None and grant.key == key
    assert second is not None and second.key == key + ":b"
    assert as_other_owner(lambda: locks.try_lock(key + ":a", 5)) is not None  # the release went through
    locks.unlock(grant)
    locks.unlock(second)


def test_a_deferred_release_frees_the_key_by_the_next_request_or_flush(locks: LockService, key: str) -> None:
    first = granted(locks.request(key + ":a", 5).wait())
    locks.unlock_deferred(first)
    pending = locks.request(key + ":b", 5)  # carries the release of :a where the backend can
    second = granted(pending.wait())
    assert as_other_owner(lambda: locks.try_lock(key + ":a", 5)) is not None
    locks.unlock_deferred(second)
    locks.flush_deferred()
    taken = as_other_owner(lambda: locks.lock(key + ":b", 5, timeout=2))  # long before the TTL
    assert taken is not None and taken.token > second.token
    with pytest.raises(NotOwned):
        locks.unlock(second)  # released once, not again


def test_only_the_requesting_thread_reads_the_answer(locks: LockService, key: str) -> None:
    pending = locks.request(key, 5)
    if isinstance(locks, NopLock):  # answered at once: nothing left to read
        assert as_other_owner(pending.wait) is not None
    else:
        with pytest.raises(LockError, match="thread that sent it"):
            as_other_owner(pending.wait)
    locks.unlock(granted(pending.wait()))

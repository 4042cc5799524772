"""RedisLock against a real Redis: key layout, round trips, millisecond TTLs, fencing, start-up checks."""
from __future__ import annotations

import os
import socket
import threading
import time
import uuid
from typing import Iterator

import pytest
import redis
from redis.connection import AbstractConnection

from locking import base
from locking.base import AlreadyHeld, LockBackendUnavailable, LockBusy, LockStartupError, NotOwned
from locking.redis_lock import RedisLock
from tests.locking.conftest import free_port, granted
from tests.locking.proxy import RedisProxy


@pytest.fixture
def round_trips(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[int]]:
    """Counts requests written to any Redis connection (one per command, or per pipeline)."""
    sent = [0]
    original = AbstractConnection.send_packed_command

    def counting(self: AbstractConnection, command: object, check_health: bool = True) -> None:
        sent[0] += 1
        original(self, command, check_health)

    monkeypatch.setattr(AbstractConnection, "send_packed_command", counting)
    yield sent


def test_keys_live_under_the_explicit_namespace(redis_lock: RedisLock, raw_redis: redis.Redis,
                                                namespace: str, key: str) -> None:
    grant = granted(redis_lock.try_lock(key, 2))
    assert raw_redis.get(namespace + key) == f"{grant.token}:{grant.owner}"
    assert 1900 < raw_redis.pttl(namespace + key) <= 2000
    assert raw_redis.get(f"{namespace}fence:{key}") == str(grant.token)
    redis_lock.unlock(grant)
    assert raw_redis.exists(namespace + key) == 0
    assert raw_redis.get(f"{namespace}fence:{key}") == str(grant.token)  # the fence stays


def test_one_round_trip_per_operation(redis_lock: RedisLock, key: str, round_trips: list[int]) -> None:
    redis_lock.unlock(granted(redis_lock.try_lock(key, 5)))  # warm up: a pooled connection exists

    def count(operation):
        before = round_trips[0]
        result = operation()
        return round_trips[0] - before, result

    sent, grant = count(lambda: redis_lock.try_lock(key, 5))
    assert sent == 1
    sent, grant = count(lambda: redis_lock.extend(grant, 5))
    assert sent == 1
    # A busy acquire from another thread, once that thread has its connection (made on its first
    # lock call, one handshake per thread for its lifetime).
    ready, go = threading.Event(), threading.Event()

    def other_thread() -> None:
        redis_lock.unlock(granted(redis_lock.try_lock(key + ":warm-up", 5)))
        ready.set()
        go.wait()
        assert redis_lock.try_lock(key, 5) is None

    busy = threading.Thread(target=other_thread)
    busy.start()
    ready.wait()

    def let_it_try() -> None:
        go.set()
        busy.join()

    sent, _ = count(let_it_try)
    assert sent == 1
    sent, _ = count(lambda: redis_lock.unlock(grant))
    assert sent == 1


def test_millisecond_ttls_are_kept(redis_lock: RedisLock, raw_redis: redis.Redis, namespace: str, key: str) -> None:
    grant = granted(redis_lock.try_lock(key, 0.35))
    assert 250 < raw_redis.pttl(namespace + key) <= 350
    grant = redis_lock.extend(grant, 0.5)  # a sub-second extend must not become EXPIRE 0
    assert 400 < raw_redis.pttl(namespace + key) <= 500
    grant = redis_lock.extend(grant, 1.25)
    assert 1150 < raw_redis.pttl(namespace + key) <= 1250
    redis_lock.unlock(grant)


def test_release_pushes_a_short_lived_wake_signal(redis_lock: RedisLock, raw_redis: redis.Redis,
                                                  namespace: str, key: str) -> None:
    for _ in range(3):
        redis_lock.unlock(granted(redis_lock.try_lock(key, 5)))
    wake = f"{namespace}wake:{key}"
    assert raw_redis.llen(wake) == 1  # a flag, not a growing queue
    assert 0 < raw_redis.pttl(wake) <= 1000


def test_busy_acquire_does_not_burn_tokens(redis_lock: RedisLock, raw_redis: redis.Redis, redis_url: str,
                                           namespace: str, key: str) -> None:
    grant = granted(redis_lock.try_lock(key, 5))
    other = RedisLock(redis_url, namespace=namespace)
    for _ in range(5):
        assert other.try_lock(key, 5) is None
    assert raw_redis.get(f"{namespace}fence:{key}") == str(grant.token)
    redis_lock.unlock(grant)
    other.close()


def test_stale_release_and_extend_leave_the_holder_untouched(redis_lock: RedisLock, raw_redis: redis.Redis,
                                                              redis_url: str, namespace: str, key: str) -> None:
    """F10/F11 as seen in Redis: GET and PTTL of B's key do not change."""
    a = granted(redis_lock.try_lock(key, 0.15))
    time.sleep(0.2)  # A's TTL runs out
    other = RedisLock(redis_url, namespace=namespace)
    b = granted(other.try_lock(key, 30))
    value = raw_redis.get(namespace + key)
    pttl = raw_redis.pttl(namespace + key)
    with pytest.raises(NotOwned) as released:
        redis_lock.unlock(a)
    with pytest.raises(NotOwned) as extended:
        redis_lock.extend(a, 60)
    assert released.value.holder_token == extended.value.holder_token == b.token
    assert raw_redis.get(namespace + key) == value == f"{b.token}:{b.owner}"
    assert pttl - 100 < raw_redis.pttl(namespace + key) <= pttl  # not reset to 60 s, not shortened
    assert other.unlock(b) is True
    other.close()


def test_extend_after_expiry_does_not_recreate_the_key(redis_lock: RedisLock, raw_redis: redis.Redis,
                                                      namespace: str, key: str) -> None:
    a = granted(redis_lock.try_lock(key, 0.1))
    time.sleep(0.15)
    with pytest.raises(NotOwned):
        redis_lock.extend(a, 5)
    assert raw_redis.exists(namespace + key) == 0


def test_reacquire_after_a_lost_reply_returns_the_same_grant(redis_url: str, raw_redis: redis.Redis,
                                                             namespace: str, key: str) -> None:
    """The local deadline passed (here: a large drift margin) but Redis still holds our value,
    as after an acquire whose reply was lost: asking again answers with our grant."""
    locks = RedisLock(redis_url, namespace=namespace, drift_factor=0.45)
    grant = granted(locks.try_lock(key, 1))
    time.sleep(max(0.0, grant.deadline - time.monotonic()) + 0.01)
    assert not grant.is_valid() and raw_redis.exists(namespace + key)
    again = granted(locks.try_lock(key, 1))
    assert again.token == grant.token
    assert 0 < again.ttl_ms < 500  # what is left of the first lease, not a fresh one
    assert locks.unlock(again) is True
    locks.close()


def test_reentry_is_refused_before_any_round_trip(redis_lock: RedisLock, key: str, round_trips: list[int]) -> None:
    grant = granted(redis_lock.try_lock(key, 5))
    before = round_trips[0]
    with pytest.raises(AlreadyHeld):
        redis_lock.lock(key, 5, timeout=5)
    assert round_trips[0] == before
    redis_lock.unlock(grant)


def test_tokens_continue_from_the_fence_counter(redis_lock: RedisLock, raw_redis: redis.Redis,
                                                namespace: str, key: str) -> None:
    raw_redis.set(f"{namespace}fence:{key}", 41)
    grant = granted(redis_lock.try_lock(key, 1))
    assert grant.token == 42
    assert raw_redis.get(f"{namespace}fence:{key}") == "42"
    redis_lock.unlock(grant)
    grant = granted(redis_lock.try_lock(key, 1, floor=7))  # a floor below the counter does not lower it
    assert grant.token == 43
    redis_lock.unlock(grant)
    big = 2**52 + 3
    raw_redis.set(f"{namespace}fence:{key}", big)
    grant = granted(redis_lock.try_lock(key, 1))
    assert grant.token == big + 1
    assert raw_redis.get(namespace + key) == f"{big + 1}:{grant.owner}"
    redis_lock.unlock(grant)


def test_after_a_flush_tokens_regress_unless_floored(redis_lock: RedisLock, raw_redis: redis.Redis,
                                                      redis_url: str, namespace: str, key: str) -> None:
    """F5 in small: the fence counter goes with Redis's data; the caller's floor restores order."""
    for _ in range(3):
        redis_lock.unlock(granted(redis_lock.try_lock(key, 5)))
    last = granted(redis_lock.try_lock(key, 5))
    for name in raw_redis.scan_iter(f"{namespace}*"):
        raw_redis.delete(name)  # what FLUSHALL, or a restart without persistence, does
    other = RedisLock(redis_url, namespace=namespace)
    regressed = granted(other.try_lock(key, 5))
    assert regressed.token < last.token  # the known hazard: the database fence must refuse it
    other.unlock(regressed)
    fresh = granted(other.try_lock(key, 5, floor=last.token))
    assert fresh.token > last.token
    with pytest.raises(NotOwned):
        redis_lock.unlock(last)
    other.unlock(fresh)
    other.close()


def test_fence_ttl_lets_idle_counters_expire(redis_url: str, raw_redis: redis.Redis, namespace: str, key: str) -> None:
    locks = RedisLock(redis_url, namespace=namespace, fence_ttl=60)
    locks.unlock(granted(locks.try_lock(key, 1)))
    assert 59_000 < raw_redis.pttl(f"{namespace}fence:{key}") <= 60_000
    locks.close()


def test_reserved_key_prefixes_are_refused(redis_lock: RedisLock) -> None:
    for bad in ("fence:x", "wake:x"):
        with pytest.raises(ValueError):
            redis_lock.try_lock(bad, 1)


def test_client_has_no_retries_and_short_timeouts(redis_lock: RedisLock) -> None:
    for pool in (redis_lock._pool, redis_lock._wait_pool):
        kwargs = pool.connection_kwargs
        assert kwargs["retry"].get_retries() == 0
        assert kwargs["health_check_interval"] == 0
        assert kwargs["socket_connect_timeout"] == 0.25
        connection = pool.make_connection()
        assert isinstance(connection, AbstractConnection)
        assert connection.retry.get_retries() == 0
    assert redis_lock._pool.connection_kwargs["socket_timeout"] == 0.25


def test_url_query_cannot_loosen_the_timeouts(redis_url: str, namespace: str) -> None:
    locks = RedisLock(redis_url + "?socket_timeout=30&socket_connect_timeout=30", namespace=namespace)
    assert locks._pool.connection_kwargs["socket_timeout"] == 0.25
    assert locks._pool.connection_kwargs["socket_connect_timeout"] == 0.25
    locks.close()


# --- backend down -----------------------------------------------------------------------------------

def test_unreachable_redis_fails_fast(namespace: str, key: str) -> None:
    """F7: nothing listens on the port."""
    locks = RedisLock(f"redis://127.0.0.1:{free_port()}/0", namespace=namespace)
    for attempt in (lambda: locks.try_lock(key, 5), lambda: locks.lock(key, 5, timeout=5)):
        started = time.monotonic()
        with pytest.raises(LockBackendUnavailable) as caught:
            attempt()
        assert time.monotonic() - started < 1.0
        assert "127.0.0.1" in str(caught.value)
    locks.close()


class SilentServer:
    """Accepts TCP connections and never answers: a hung Redis. Counts the connections."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.accepted: list[socket.socket] = []
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while True:
            try:
                connection, _ = self.sock.accept()
            except OSError:
                return
            self.accepted.append(connection)

    def close(self) -> None:
        self.sock.close()
        for connection in self.accepted:
            connection.close()


@pytest.fixture
def silent_server() -> Iterator[SilentServer]:
    server = SilentServer()
    yield server
    server.close()


def test_hung_redis_fails_within_the_socket_timeout_without_retrying(silent_server: SilentServer,
                                                                     namespace: str, key: str) -> None:
    locks = RedisLock(f"redis://127.0.0.1:{silent_server.port}/0", namespace=namespace)
    started = time.monotonic()
    with pytest.raises(LockBackendUnavailable):
        locks.try_lock(key, 5)
    elapsed = time.monotonic() - started
    assert 0.2 <= elapsed < 1.0
    assert len(silent_server.accepted) == 1  # one connection, no retry
    locks.close()


def test_check_server_on_unreachable_redis_is_a_startup_error(namespace: str) -> None:
    port = free_port()
    locks = RedisLock(f"redis://:secret@127.0.0.1:{port}/3", namespace=namespace)
    started = time.monotonic()
    with pytest.raises(LockStartupError) as caught:
        locks.check_server()
    assert time.monotonic() - started < 1.0
    assert f"127.0.0.1:{port}/3" in str(caught.value)
    assert "secret" not in str(caught.value)
    locks.close()


# --- start-up checks --------------------------------------------------------------------------------

def test_check_server_refuses_an_evicting_redis(redis_lock: RedisLock, raw_redis: redis.Redis) -> None:
    original = raw_redis.config_get("maxmemory-policy")["maxmemory-policy"]
    assert original is not None
    try:
        raw_redis.config_set("maxmemory-policy", "allkeys-lru")
        with pytest.raises(LockStartupError) as caught:
            redis_lock.check_server()
    finally:
        raw_redis.config_set("maxmemory-policy", original)
    assert "allkeys-lru" in str(caught.value)
    assert "noeviction" in str(caught.value)
    assert redis_lock.check_server().maxmemory_policy == "noeviction"


def test_check_server_warns_when_config_is_not_allowed(redis_url: str, raw_redis: redis.Redis, namespace: str,
                                                       caplog: pytest.LogCaptureFixture) -> None:
    user, password = f"qmtest-{uuid.uuid4().hex[:8]}", uuid.uuid4().hex
    raw_redis.acl_setuser(user, enabled=True, passwords=[f"+{password}"], keys=["*"], channels=["*"],
                          commands=["+@all", "-config"])
    try:
        base = redis_url.split("://", 1)[1]
        locks = RedisLock(f"redis://{user}:{password}@{base}", namespace=namespace)
        with caplog.at_level("WARNING", logger="quantmesh.locking"):
            check = locks.check_server()
        assert check.maxmemory_policy is None
        assert "maxmemory-policy" in caplog.text
        locks.unlock(granted(locks.try_lock("reconcile:binance:BTC/USDT", 1)))
        locks.close()
    finally:
        raw_redis.acl_deluser(user)


# --- F18: same key everywhere -----------------------------------------------------------------------

def test_two_instances_with_the_same_namespace_contend(redis_url: str, raw_redis: redis.Redis,
                                                       namespace: str, key: str) -> None:
    """Two services with their own clients (as two bot instances whose Django caches differ in
    KEY_PREFIX or VERSION: the lock never goes through the cache) exclude each other."""
    one = RedisLock(redis_url, namespace=namespace, instance_id="bot-1")
    two = RedisLock(redis_url, namespace=namespace, instance_id="bot-2")
    grant = granted(one.try_lock(key, 5))
    assert two.try_lock(key, 5) is None
    with pytest.raises(LockBusy):
        two.lock(key, 5, timeout=0.15)
    assert raw_redis.get(namespace + key) == f"{grant.token}:{grant.owner}"  # no cache prefix/version
    one.unlock(grant)
    grant_two = granted(two.try_lock(key, 5))
    assert grant_two.token > grant.token
    two.unlock(grant_two)
    one.close()
    two.close()


# -- unlock_nowait: the release goes out at once, its answer is read at the next operation --

@pytest.fixture
def lock_events() -> Iterator[list[base.LockEventMessage]]:
    received: list[base.LockEventMessage] = []
    base.set_event_sink(received.append)
    yield received
    base.set_event_sink(None)


def test_unlock_nowait_frees_the_key_without_another_operation(redis_lock: RedisLock, redis_url: str,
                                                               namespace: str, key: str) -> None:
    grant = granted(redis_lock.try_lock(key, 30))
    redis_lock.unlock_nowait(grant)
    # Nothing more happens on redis_lock: another instance must still get the key long before
    # the 30 s TTL (it waits for the release signal, up to 2 s).
    other = RedisLock(redis_url, namespace=namespace, instance_id="other")
    try:
        assert other.lock(key, 30, timeout=2).token == grant.token + 1
    finally:
        other.close()


def test_unlock_nowait_sends_one_request_and_reads_its_answer_with_the_next(
        redis_lock: RedisLock, key: str, round_trips: list[int], lock_events: list[base.LockEventMessage]) -> None:
    redis_lock.unlock(granted(redis_lock.try_lock(key, 5)))  # warm up: this thread's connection exists
    grant = granted(redis_lock.try_lock(key, 5))
    before = round_trips[0]
    redis_lock.unlock_nowait(grant)
    again = redis_lock.try_lock(key, 5)  # reads the release's answer, then acquires
    assert round_trips[0] - before == 2
    assert again is not None and again.token == grant.token + 1
    assert lock_events == []


def test_a_lock_lost_before_unlock_nowait_is_recorded_at_the_next_operation(
        redis_lock: RedisLock, raw_redis: redis.Redis, namespace: str, key: str,
        lock_events: list[base.LockEventMessage]) -> None:
    grant = granted(redis_lock.try_lock(key, 30))
    raw_redis.delete(namespace + key)  # as if the TTL ran out while the order was in flight
    redis_lock.unlock_nowait(grant)
    assert redis_lock.try_lock(key + ":next", 5) is not None
    assert [(e.kind, e.key, e.token) for e in lock_events] == [("lost", key, grant.token)]


def test_unlock_nowait_still_releases_after_redis_lost_its_scripts(
        redis_lock: RedisLock, raw_redis: redis.Redis, namespace: str, key: str,
        lock_events: list[base.LockEventMessage]) -> None:
    grant = granted(redis_lock.try_lock(key, 30))
    raw_redis.script_flush()  # what a Redis restart does to the script cache
    redis_lock.unlock_nowait(grant)  # EVALSHA: refused with NOSCRIPT, sent again as EVAL on reading
    assert redis_lock.try_lock(key + ":next", 5) is not None
    assert raw_redis.exists(namespace + key) == 0
    assert lock_events == []


# --- request(): the acquire sent, its answer read later ------------------------------------------------

def test_request_is_one_request_and_its_answer_is_read_once(redis_lock: RedisLock, key: str,
                                                             round_trips: list[int]) -> None:
    redis_lock.unlock(granted(redis_lock.try_lock(key, 5)))  # warm up: this thread's connection exists
    before = round_trips[0]
    pending = redis_lock.request(key, 5)
    assert round_trips[0] - before == 1
    grant = granted(pending.wait())
    assert pending.wait() is grant and round_trips[0] - before == 1
    redis_lock.unlock(grant)


def test_request_holds_the_key_in_redis_before_the_answer_is_read(redis_lock: RedisLock, redis_url: str,
                                                                  namespace: str, key: str) -> None:
    pending = redis_lock.request(key, 5)
    other = RedisLock(redis_url, namespace=namespace, instance_id="other")
    try:
        assert other.try_lock(key, 5) is None  # Redis ran the acquire as soon as it arrived
    finally:
        other.close()
    redis_lock.unlock(granted(pending.wait()))


def test_a_busy_answer_is_recorded_once_as_a_conflict(redis_lock: RedisLock, redis_url: str, namespace: str,
                                                      key: str, lock_events: list[base.LockEventMessage]) -> None:
    other = RedisLock(redis_url, namespace=namespace, instance_id="other")
    try:
        held = granted(other.try_lock(key, 5))
        pending = redis_lock.request(key, 5)
        assert pending.wait() is None and pending.wait() is None
        assert [(e.kind, e.key) for e in lock_events] == [("conflict", key)]
        other.unlock(held)
    finally:
        other.close()


def test_request_after_redis_lost_its_scripts_still_acquires(redis_lock: RedisLock, raw_redis: redis.Redis,
                                                             namespace: str, key: str) -> None:
    redis_lock.unlock(granted(redis_lock.try_lock(key, 5)))
    raw_redis.script_flush()
    grant = redis_lock.request(key, 5).wait()  # NOSCRIPT on reading: sent again as EVAL
    assert grant is not None
    assert raw_redis.get(namespace + key) == f"{grant.token}:{grant.owner}"
    redis_lock.unlock(grant)


def test_request_to_an_unreachable_redis_fails_at_once(namespace: str, key: str,
                                                       lock_events: list[base.LockEventMessage]) -> None:
    locks = RedisLock(f"redis://127.0.0.1:{free_port()}/0", namespace=namespace)
    with pytest.raises(LockBackendUnavailable):
        locks.request(key, 5)
    assert [e.kind for e in lock_events] == ["backend_error"]
    locks.close()


def test_a_redis_gone_silent_fails_the_wait_within_the_socket_timeout(
        redis_url: str, namespace: str, key: str, lock_events: list[base.LockEventMessage]) -> None:
    options = redis.connection.parse_url(redis_url)
    proxy = RedisProxy(options.get("host", "127.0.0.1"), options.get("port", 6379))
    locks = RedisLock(proxy.url(options.get("db", 0)), namespace=namespace)
    try:
        locks.unlock(granted(locks.try_lock(key, 5)))  # connected through the proxy
        proxy.mode = "blackhole"  # a partition: the request is written, nothing comes back
        pending = locks.request(key, 5)
        started = time.monotonic()
        with pytest.raises(LockBackendUnavailable):
            pending.wait()
        assert time.monotonic() - started < 1.0
        with pytest.raises(LockBackendUnavailable):
            pending.wait()  # the failure is the answer, kept
        assert [e.kind for e in lock_events] == ["backend_error"]
        proxy.mode = "pass"
        assert locks.try_lock(key + ":after", 5) is not None  # a new connection once Redis answers again
    finally:
        locks.close()
        proxy.close()


def test_an_unread_answer_is_read_by_the_next_operation(redis_lock: RedisLock, key: str) -> None:
    pending = redis_lock.request(key, 5)
    other = granted(redis_lock.try_lock(key + ":next", 5))  # reads the answer first: one answer in flight at most
    assert pending._answered
    grant = granted(pending.wait())
    assert grant.key == key and other.key == key + ":next"
    redis_lock.unlock(grant)
    redis_lock.unlock(other)


# --- unlock_deferred(): a release that travels with the thread's next request --------------------------

def test_a_deferred_release_goes_out_with_the_next_request(redis_lock: RedisLock, raw_redis: redis.Redis,
                                                           namespace: str, key: str, round_trips: list[int],
                                                           lock_events: list[base.LockEventMessage]) -> None:
    # Warm up: this thread's connection exists and Redis has the combined script.
    redis_lock.unlock_deferred(granted(redis_lock.request(key + ":0", 5).wait()))
    first = granted(redis_lock.request(key + ":1", 5).wait())
    before = round_trips[0]
    redis_lock.unlock_deferred(first)
    assert round_trips[0] == before
    assert raw_redis.exists(namespace + key + ":1") == 1  # still held
    before = round_trips[0]
    pending = redis_lock.request(key + ":2", 5)
    second = pending.wait()
    assert round_trips[0] - before == 1  # one message: the release and the acquire
    assert raw_redis.exists(namespace + key + ":1") == 0
    assert second is not None and raw_redis.get(namespace + key + ":2") == f"{second.token}:{second.owner}"
    redis_lock.unlock(second)
    assert lock_events == []


def test_a_deferred_release_then_the_same_key_again(redis_lock: RedisLock, key: str) -> None:
    first = granted(redis_lock.request(key, 5).wait())
    redis_lock.unlock_deferred(first)
    again = redis_lock.request(key, 5).wait()  # released, then acquired, in one script
    assert again is not None and again.token == first.token + 1
    redis_lock.unlock(again)


def test_flush_sends_a_deferred_release_without_waiting(redis_lock: RedisLock, redis_url: str, namespace: str,
                                                        key: str, round_trips: list[int]) -> None:
    grant = granted(redis_lock.request(key, 30).wait())
    redis_lock.unlock_deferred(grant)
    before = round_trips[0]
    redis_lock.flush_deferred()  # reads the acquire's answer, sends the release
    redis_lock.flush_deferred()  # nothing left to send
    assert round_trips[0] - before == 1
    other = RedisLock(redis_url, namespace=namespace, instance_id="other")
    try:  # long before the 30 s TTL
        assert other.lock(key, 30, timeout=2).token == grant.token + 1
    finally:
        other.close()


def test_any_other_lock_call_sends_a_deferred_release_first(redis_lock: RedisLock, raw_redis: redis.Redis,
                                                            namespace: str, key: str) -> None:
    grant = granted(redis_lock.request(key, 30).wait())
    redis_lock.unlock_deferred(grant)
    other = granted(redis_lock.try_lock(key + ":other", 5))
    assert raw_redis.exists(namespace + key) == 0
    redis_lock.unlock(other)


def test_a_lock_lost_before_its_deferred_release_is_recorded(redis_lock: RedisLock, raw_redis: redis.Redis,
                                                             namespace: str, key: str,
                                                             lock_events: list[base.LockEventMessage]) -> None:
    grant = granted(redis_lock.request(key, 30).wait())
    raw_redis.delete(namespace + key)  # as if the TTL ran out while the order was in flight
    redis_lock.unlock_deferred(grant)
    nxt = redis_lock.request(key + ":next", 5).wait()
    assert nxt is not None
    assert [(e.kind, e.key, e.token) for e in lock_events] == [("lost", key, grant.token)]
    redis_lock.unlock(nxt)


def test_a_deferred_release_after_redis_lost_its_scripts(redis_lock: RedisLock, raw_redis: redis.Redis,
                                                         namespace: str, key: str,
                                                         lock_events: list[base.LockEventMessage]) -> None:
    grant = granted(redis_lock.request(key, 30).wait())
    redis_lock.unlock_deferred(grant)
    raw_redis.script_flush()
    nxt = redis_lock.request(key + ":next", 5).wait()  # NOSCRIPT: the combined script sent as EVAL
    assert nxt is not None and raw_redis.exists(namespace + key) == 0
    assert lock_events == []
    redis_lock.unlock(nxt)


def test_a_deferred_release_lost_with_redis_is_recorded_and_expires(
        redis_url: str, namespace: str, key: str, raw_redis: redis.Redis,
        lock_events: list[base.LockEventMessage]) -> None:
    options = redis.connection.parse_url(redis_url)
    proxy = RedisProxy(options.get("host", "127.0.0.1"), options.get("port", 6379))
    locks = RedisLock(proxy.url(options.get("db", 0)), namespace=namespace)
    try:
        grant = granted(locks.request(key, 5).wait())
        locks.unlock_deferred(grant)
        proxy.mode = "blackhole"
        pending = locks.request(key + ":next", 5)
        with pytest.raises(LockBackendUnavailable):
            pending.wait()
        assert sorted((e.kind, e.key) for e in lock_events) == [("backend_error", key), ("backend_error", key + ":next")]
        assert 0 < raw_redis.pttl(namespace + key) <= 5000  # whatever Redis did, the TTL ends it
    finally:
        locks.close()
        proxy.close()


def test_a_forked_child_never_sends_its_parents_deferred_release(redis_lock: RedisLock, raw_redis: redis.Redis,
                                                                namespace: str, key: str) -> None:
    grant = granted(redis_lock.request(key, 30).wait())
    redis_lock.unlock_deferred(grant)
    pid = os.fork()
    if pid == 0:  # the child: its own lock calls only
        code = 1
        try:
            mine = [redis_lock.try_lock(key + ":child-1", 5), redis_lock.request(key + ":child-2", 5).wait()]
            code = 0 if None not in mine else 2
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert raw_redis.get(namespace + key) == f"{grant.token}:{grant.owner}"  # still the parent's
    redis_lock.flush_deferred()
    assert redis_lock.try_lock(key + ":next", 5) is not None  # reads the release's answer
    assert raw_redis.exists(namespace + key) == 0

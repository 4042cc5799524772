"""Fault tests with real processes, a real Redis and a TCP proxy: contention, a killed or paused
holder, lost replies and a partitioned holder.

The workers live in tests/locking/lock_worker.py. Synchronisation goes through Redis lists and
the workers' pipes, never through sleeps; the only sleeps left let a TTL run out.
"""
from __future__ import annotations

import json
import os
import signal
import statistics
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Iterator

import pytest
import redis
from redis.connection import parse_url

from locking.base import LockBackendUnavailable, LockEventMessage, set_event_sink
from locking.redis_lock import RedisLock
from tests.locking.conftest import REPO, granted, in_thread, is_waiting, wait_until
from tests.locking.proxy import RedisProxy

PROCESSES = 16
ITERATIONS = 300


def spawn(*args: str, stdin: int | None = None) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "tests.locking.lock_worker", *args],
        cwd=REPO, stdin=stdin, stdout=subprocess.PIPE, text=True,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )


def counter(raw: redis.Redis, namespace: str, run: str) -> int:
    """The shared counter the workers of one run increment."""
    value = raw.get(f"{namespace}counter:{run}")
    assert value is not None, "no worker wrote the counter"
    return int(value)


def start_together(raw: redis.Redis, namespace: str, run: str, workers: list[subprocess.Popen]) -> None:
    """Wait until every worker is connected and ready, then release them all at once."""
    for _ in workers:
        if raw.blpop([f"{namespace}ready:{run}"], timeout=60) is None:
            pytest.fail("workers did not report ready")
    raw.rpush(f"{namespace}go:{run}", *["go"] * len(workers))


def finish(workers: list[subprocess.Popen], timeout: float = 120) -> None:
    for worker in workers:
        assert worker.wait(timeout) == 0, "worker failed"


@pytest.fixture
def processes() -> Iterator[list[subprocess.Popen]]:
    """Worker processes of one test; any still running at the end are killed."""
    started: list[subprocess.Popen] = []
    yield started
    for worker in started:
        if worker.poll() is None:
            worker.kill()
        worker.wait(10)
        if worker.stdout:
            worker.stdout.close()
        if worker.stdin:
            worker.stdin.close()


@pytest.mark.slow
def test_f1_contention_keeps_exclusion_and_order(redis_url: str, raw_redis: redis.Redis, namespace: str,
                                                 key: str, tmp_path: Path,
                                                 processes: list[subprocess.Popen]) -> None:
    """F1: 16 processes x 300 read-modify-writes of one Redis counter under one lock."""
    run = uuid.uuid4().hex[:8]
    outs = [tmp_path / f"worker-{i}.jsonl" for i in range(PROCESSES)]
    for out in outs:
        processes.append(spawn("contend", redis_url, namespace, key, "--run", run,
                               "--iterations", str(ITERATIONS), "--out", str(out)))
    started = time.monotonic()
    start_together(raw_redis, namespace, run, processes)
    finish(processes)
    elapsed = time.monotonic() - started

    sections, gauge_max, per_process = [], 0, {}
    for out in outs:
        lines = [json.loads(line) for line in out.read_text().splitlines()]
        *records, summary = lines
        sections.extend(records)
        gauge_max = max(gauge_max, summary["gauge_max"])
        per_process[summary["pid"]] = [record["wait"] for record in records]

    total = PROCESSES * ITERATIONS
    assert len(sections) == total
    assert counter(raw_redis, namespace, run) == total, "lost updates"
    assert gauge_max == 1, "two processes were inside the critical section at once"

    sections.sort(key=lambda record: record["grant_us"])
    overlaps = sum(1 for before, after in zip(sections, sections[1:]) if after["grant_us"] < before["release_us"])
    assert overlaps == 0, "grant intervals overlap in Redis server time"
    assert all(record["grant_us"] <= record["release_us"] for record in sections)
    tokens = [record["token"] for record in sections]
    assert all(a < b for a, b in zip(tokens, tokens[1:])), "tokens do not strictly increase with grant time"

    waits = sorted(record["wait"] for record in sections)
    print(f"\nF1: {total} sections in {elapsed:.1f} s; acquire wait p50 {statistics.median(waits) * 1000:.2f} ms, "
          f"p99 {waits[int(0.99 * len(waits))] * 1000:.2f} ms; per-process max wait "
          f"{min(max(w) for w in per_process.values()) * 1000:.1f}-{max(max(w) for w in per_process.values()) * 1000:.1f} ms")
    assert elapsed < 60


@pytest.mark.slow
def test_f1_control_without_the_lock_loses_updates(redis_url: str, raw_redis: redis.Redis, namespace: str,
                                                   key: str, processes: list[subprocess.Popen]) -> None:
    """The same read-modify-write without a lock: proof that the F1 check can fail."""
    run = uuid.uuid4().hex[:8]
    for _ in range(PROCESSES):
        processes.append(spawn("rmw", redis_url, namespace, key, "--run", run, "--iterations", str(ITERATIONS)))
    start_together(raw_redis, namespace, run, processes)
    finish(processes)
    lost = PROCESSES * ITERATIONS - counter(raw_redis, namespace, run)
    print(f"\nF1 control: {lost} of {PROCESSES * ITERATIONS} updates lost without the lock")
    assert lost > 0


def start_holder(redis_url: str, namespace: str, key: str, ttl: float,
                 processes: list[subprocess.Popen]) -> tuple[subprocess.Popen, dict]:
    holder = spawn("hold", redis_url, namespace, key, "--ttl", str(ttl), stdin=subprocess.PIPE)
    processes.append(holder)
    assert holder.stdout is not None  # spawn() pipes it
    line = holder.stdout.readline()
    assert line, "holder exited before taking the lock"
    return holder, json.loads(line)


def test_f2_killed_holder_is_replaced_after_its_ttl(redis_url: str, raw_redis: redis.Redis, namespace: str,
                                                   key: str, processes: list[subprocess.Popen]) -> None:
    """F2: SIGKILL the holder; a contender already waiting gets the lock after the TTL, not before."""
    ttl = 1.0
    holder, held = start_holder(redis_url, namespace, key, ttl, processes)
    contender = RedisLock(redis_url, namespace=namespace, instance_id="contender")
    waiter, box = in_thread(lambda: contender.lock(key, 5, timeout=5))
    wait_until(lambda: is_waiting(contender, raw_redis), what="the contender to block")
    holder.send_signal(signal.SIGKILL)
    holder.wait(5)
    waiter.join(10)
    grant = box["result"]
    elapsed = (grant.server_time_us - held["grant_us"]) / 1e6  # both from Redis's clock
    assert grant.token > held["token"]
    assert ttl - 0.002 <= elapsed <= ttl + 0.3
    contender.unlock(grant)
    contender.close()


def test_f3_paused_holder_finds_its_lock_lost(redis_url: str, raw_redis: redis.Redis, namespace: str,
                                             key: str, processes: list[subprocess.Popen]) -> None:
    """F3 at the lock level: SIGSTOP the holder past its TTL; the contender takes over with a higher
    token; the resumed holder's release and extend answer NotOwned and change nothing."""
    holder, held = start_holder(redis_url, namespace, key, 0.5, processes)
    holder.send_signal(signal.SIGSTOP)
    contender = RedisLock(redis_url, namespace=namespace, instance_id="contender")
    try:
        grant = contender.lock(key, 30, timeout=3)
        assert grant.token > held["token"]
        value, pttl = raw_redis.get(namespace + key), raw_redis.pttl(namespace + key)
    finally:
        holder.send_signal(signal.SIGCONT)
    assert holder.stdin is not None and holder.stdout is not None  # start_holder() pipes both
    holder.stdin.write("extend 60\nunlock\n")
    holder.stdin.flush()
    assert json.loads(holder.stdout.readline()) == {"extend": "not_owned", "holder_token": grant.token}
    assert json.loads(holder.stdout.readline()) == {"unlock": "not_owned", "holder_token": grant.token}
    assert raw_redis.get(namespace + key) == value
    assert pttl - 500 < raw_redis.pttl(namespace + key) <= pttl
    contender.unlock(grant)
    contender.close()


@pytest.mark.slow
def test_default_redis_py_client_retries_against_a_hung_server() -> None:
    """Why RedisLock turns retries off: a default redis-py client opens eleven connections and takes
    seconds before it reports a hung server (our client: one connection, one socket timeout)."""
    from tests.locking.test_redis_lock import SilentServer

    server = SilentServer()
    client = redis.Redis(port=server.port, socket_timeout=0.05, socket_connect_timeout=0.05)
    try:
        with pytest.raises(redis.TimeoutError):
            client.ping()
        assert len(server.accepted) == 11
    finally:
        client.close()
        server.close()


# --- network faults through a proxy (F6, F8, F9) ------------------------------------------------------

@pytest.fixture
def proxy(redis_url: str) -> Iterator[tuple[RedisProxy, str]]:
    parts = parse_url(redis_url)
    server = RedisProxy(parts["host"], parts["port"])
    yield server, server.url(parts.get("db", 0))
    server.close()


def test_f8_lost_acquire_reply_is_resolved_by_asking_again(proxy: tuple[RedisProxy, str], raw_redis: redis.Redis,
                                                            namespace: str, key: str) -> None:
    server, url = proxy
    locks = RedisLock(url, namespace=namespace)
    locks.check_server()  # connected, so only the acquire's reply is lost
    server.mode = "drop_replies"
    started = time.monotonic()
    with pytest.raises(LockBackendUnavailable):
        locks.try_lock(key, 5)
    assert time.monotonic() - started < 1.0
    stored = raw_redis.get(namespace + key)
    assert isinstance(stored, str) and stored.endswith(":" + locks.owner_id())  # it went through
    server.mode = "pass"
    grant = granted(locks.try_lock(key, 5))
    assert f"{grant.token}:{grant.owner}" == stored  # the same grant, not a second one
    assert locks.unlock(grant) is True
    locks.close()


def test_f9_lost_release_reply_then_retry_is_not_a_lost_lock(proxy: tuple[RedisProxy, str], raw_redis: redis.Redis,
                                                             namespace: str, key: str) -> None:
    server, url = proxy
    locks = RedisLock(url, namespace=namespace)
    events: list[LockEventMessage] = []
    set_event_sink(events.append)
    try:
        grant = granted(locks.try_lock(key, 5))
        server.mode = "drop_replies"
        with pytest.raises(LockBackendUnavailable):
            locks.unlock(grant)
        assert raw_redis.exists(namespace + key) == 0  # the release was applied
        server.mode = "pass"
        assert locks.unlock(grant) is True
    finally:
        set_event_sink(None)
    assert [event.kind for event in events] == ["backend_error"]
    locks.close()


def test_f6_partitioned_holder_stops_at_its_deadline(proxy: tuple[RedisProxy, str], redis_url: str,
                                                     namespace: str, key: str) -> None:
    server, url = proxy
    holder = RedisLock(url, namespace=namespace, instance_id="cut-off")
    grant = granted(holder.try_lock(key, 0.6))
    server.mode = "blackhole"
    started = time.monotonic()
    with pytest.raises(LockBackendUnavailable):
        holder.extend(grant, 0.6)  # the renewal cannot get through
    assert time.monotonic() - started < 1.0
    contender = RedisLock(redis_url, namespace=namespace, instance_id="contender")
    taken = contender.lock(key, 5, timeout=3)
    taken_at = time.monotonic()
    assert taken.token > grant.token
    assert not grant.is_valid()
    assert grant.deadline <= taken_at  # the holder knew it had lost the lock before anyone else got it
    contender.unlock(taken)
    contender.close()
    holder.close()

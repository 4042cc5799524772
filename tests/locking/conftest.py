from __future__ import annotations

import socket
import threading
import time
import uuid
from pathlib import Path
from typing import Callable, Iterator

import pytest
import redis

from locking.base import Grant, LockService
from locking.nop import NopLock
from locking.redis_lock import RedisLock

REPO = Path(__file__).resolve().parents[2]


def wait_until(predicate: Callable[[], bool], timeout: float = 5.0, what: str = "condition") -> None:
    """Wait for `predicate` to hold, checking every few milliseconds; fail after `timeout`."""
    end = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > end:
            pytest.fail(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.002)


def granted(grant: Grant | None) -> Grant:
    """The grant of an acquire the test expects to succeed (the key is free)."""
    assert grant is not None, "the lock was not granted"
    return grant


def is_waiting(locks: LockService, raw: redis.Redis) -> bool:
    """True once some thread of `locks` is blocked waiting for a release."""
    if isinstance(locks, RedisLock):
        return any(client.get("name") == locks.client_name and client.get("cmd") == "blpop"
                   for client in raw.client_list())
    assert isinstance(locks, NopLock)
    return bool(locks._waiting)


def in_thread(fn: Callable[[], object]) -> tuple[threading.Thread, dict]:
    """Run fn in a thread; the returned dict gets 'result' or 'error' and 'at' (monotonic)."""
    box: dict = {}

    def run() -> None:
        try:
            box["result"] = fn()
        except BaseException as exc:  # handed to the test thread
            box["error"] = exc
        box["at"] = time.monotonic()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, box


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def namespace() -> str:
    return f"qmtest:{uuid.uuid4().hex[:10]}:"


@pytest.fixture
def key() -> str:
    return f"order:binance:BTC/USDT:level:{uuid.uuid4().int % 100000}"


@pytest.fixture
def raw_redis(redis_url: str, namespace: str) -> Iterator[redis.Redis]:
    """A plain client for looking at Redis directly; deletes the test's namespace afterwards."""
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    yield client
    for name in client.scan_iter(f"{namespace}*", count=1000):
        client.delete(name)
    client.close()


@pytest.fixture
def redis_lock(redis_url: str, namespace: str, raw_redis: redis.Redis) -> Iterator[RedisLock]:
    locks = RedisLock(redis_url, namespace=namespace)
    locks.check_server()
    yield locks
    locks.close()


@pytest.fixture(params=["nop", "redis"])
def locks(request: pytest.FixtureRequest) -> Iterator[LockService]:
    """Each backend in turn, for the shared API suite."""
    if request.param == "nop":
        service = NopLock()
        yield service
        service.close()
    else:
        yield request.getfixturevalue("redis_lock")


@pytest.fixture
def raw(request: pytest.FixtureRequest, locks: LockService) -> redis.Redis | None:
    """The plain Redis client when the backend is Redis."""
    return request.getfixturevalue("raw_redis") if isinstance(locks, RedisLock) else None

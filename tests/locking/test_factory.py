"""build_lock_service: the lock service from already-parsed settings."""
from __future__ import annotations

import time

import pytest
from redis.connection import parse_url

from locking.base import LockStartupError
from locking.factory import build_lock_service
from locking.nop import NopLock
from locking.redis_lock import RedisLock
from tests.locking.conftest import free_port, granted
from trading.configfile import parse_distributed_lock


def test_nop_is_the_default() -> None:
    service = build_lock_service()
    assert isinstance(service, NopLock)
    assert isinstance(build_lock_service(" NOP ", None), NopLock)


def test_nop_ignores_redis_only_options() -> None:
    service = build_lock_service("nop", "redis://127.0.0.1:1/0", namespace="x:", socket_timeout=1,
                                 instance_id="bot-1")
    assert isinstance(service, NopLock) and service.instance_id == "bot-1"


def test_unknown_backend_is_named_in_the_error() -> None:
    with pytest.raises(ValueError, match="'etcd'"):
        build_lock_service("etcd")


def test_redis_without_a_url_is_a_startup_error() -> None:
    with pytest.raises(LockStartupError, match="REDIS_URL"):
        build_lock_service("redis", None)


def test_redis_without_a_server_is_a_clear_error_never_a_fallback() -> None:
    port = free_port()
    started = time.monotonic()
    with pytest.raises(LockStartupError, match=f"cannot reach Redis at 127.0.0.1:{port}/0"):
        build_lock_service("redis", f"redis://127.0.0.1:{port}/0")
    assert time.monotonic() - started < 1.0


def test_redis_with_a_server_is_checked_and_returned(redis_url: str, namespace: str, raw_redis) -> None:
    service = build_lock_service("redis", redis_url, namespace=namespace, instance_id="bot-7")
    assert isinstance(service, RedisLock)
    assert service.namespace == namespace and service.instance_id == "bot-7"
    service.unlock(granted(service.try_lock("reconcile:binance:BTC/USDT", 1)))
    service.close()


def test_a_parsed_distributed_lock_block_builds_a_checked_redis_lock(redis_url: str, namespace: str,
                                                                     raw_redis) -> None:
    parts = parse_url(redis_url)
    backend, url, prefix = parse_distributed_lock({
        "enabled": True, "prefix": namespace,
        "redis": {"addr": f"{parts['host']}:{parts['port']}", "db": parts.get("db", 0)},
    })
    service = build_lock_service(backend, url, namespace=prefix)
    assert isinstance(service, RedisLock)
    assert service.namespace == namespace
    grant = granted(service.try_lock("reconcile:binance:BTC/USDT", 1))
    assert raw_redis.exists(f"{namespace}reconcile:binance:BTC/USDT")
    service.unlock(grant)
    service.close()

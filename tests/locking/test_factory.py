"""build_lock_service and the `distributed_lock` YAML block."""
from __future__ import annotations

import time
from decimal import Decimal

import pytest
import yaml

from locking.base import LockStartupError
from locking.factory import LockSettings, build_lock_service, lock_settings_from_config
from locking.nop import NopLock
from locking.redis_lock import RedisLock
from tests.locking.conftest import free_port


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
    service.unlock(service.try_lock("reconcile:binance:BTC/USDT", 1))
    service.close()


CONFIG = """
distributed_lock:
  enabled: true
  type: redis
  prefix: "qm:lock:"
  default_ttl: 2.5
  redis:
    addr: "10.0.0.5:6380"
    password: "p@ss:w/rd"
    db: 2
    pool_size: 20
"""


def test_a_full_block_becomes_redis_settings() -> None:
    settings = lock_settings_from_config(yaml.safe_load(CONFIG)["distributed_lock"])
    assert settings.backend == "redis"
    assert settings.namespace == "qm:lock:"
    assert settings.default_ttl == Decimal("2.5")
    assert settings.max_connections == 20
    assert settings.redis_url == "redis://:p%40ss%3Aw%2Frd@10.0.0.5:6380/2"
    assert settings.redis_address == "10.0.0.5:6380/2"
    assert "p@ss" not in repr(settings)


def test_the_password_survives_the_url_round_trip() -> None:
    from redis.connection import parse_url

    settings = lock_settings_from_config(yaml.safe_load(CONFIG)["distributed_lock"])
    assert parse_url(settings.redis_url)["password"] == "p@ss:w/rd"


@pytest.mark.parametrize("block", [None, {}, {"enabled": False}, {"enabled": False, "type": "etcd"}])
def test_disabled_or_missing_block_is_nop(block: dict | None) -> None:
    settings = lock_settings_from_config(block)
    assert settings == LockSettings(backend="nop")
    assert isinstance(settings.build(), NopLock)


def test_defaults_follow_the_original_program() -> None:
    settings = lock_settings_from_config({"enabled": True})
    assert settings.redis_url == "redis://localhost:6379/0"
    assert settings.namespace == "quantmesh:lock:"
    assert settings.default_ttl == 5
    assert settings.max_connections == 10


@pytest.mark.parametrize("addr, url", [
    ("127.0.0.1", "redis://127.0.0.1:6379/0"),
    ("[::1]:6390", "redis://[::1]:6390/0"),
    ("redis.internal:7000", "redis://redis.internal:7000/0"),
])
def test_addresses(addr: str, url: str) -> None:
    assert lock_settings_from_config({"enabled": True, "redis": {"addr": addr}}).redis_url == url


@pytest.mark.parametrize("block, named", [
    ({"enabled": "yes"}, "distributed_lock.enabled"),
    ({"enabled": True, "type": "etcd"}, "distributed_lock.type"),
    ({"enabled": True, "type": ""}, "distributed_lock.type"),
    ({"prefix": ""}, "distributed_lock.prefix"),
    ({"default_ttl": 0}, "distributed_lock.default_ttl"),
    ({"default_ttl": "soon"}, "distributed_lock.default_ttl"),
    ({"redis": "localhost"}, "distributed_lock.redis"),
    ({"redis": {"addr": "localhost:http"}}, "distributed_lock.redis.addr"),
    ({"redis": {"addr": "localhost:70000"}}, "distributed_lock.redis.addr"),
    ({"redis": {"addr": ""}}, "distributed_lock.redis.addr"),
    ({"redis": {"db": -1}}, "distributed_lock.redis.db"),
    ({"redis": {"db": "0"}}, "distributed_lock.redis.db"),
    ({"redis": {"pool_size": 0}}, "distributed_lock.redis.pool_size"),
    ({"redis": {"password": 123}}, "distributed_lock.redis.password"),
    ("enabled", "distributed_lock"),
])
def test_bad_values_name_the_key(block: object, named: str) -> None:
    with pytest.raises(ValueError, match=named.replace(".", r"\.")):
        lock_settings_from_config(block)  # type: ignore[arg-type]


def test_unknown_keys_are_ignored_with_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    block = {"enabled": False, "fallback_mode": "nop", "redis": {"addr": "localhost:6379", "retry_interval": 5}}
    with caplog.at_level("WARNING", logger="quantmesh.locking"):
        settings = lock_settings_from_config(block)
    assert settings.backend == "nop"
    assert "fallback_mode" in caplog.text and "retry_interval" in caplog.text


def test_settings_build_a_checked_redis_lock(redis_url: str, namespace: str, raw_redis) -> None:
    from redis.connection import parse_url

    parts = parse_url(redis_url)
    settings = lock_settings_from_config({
        "enabled": True, "prefix": namespace,
        "redis": {"addr": f"{parts['host']}:{parts['port']}", "db": parts.get("db", 0), "pool_size": 3},
    })
    service = settings.build()
    assert isinstance(service, RedisLock)
    assert service.namespace == namespace
    assert service._pool.max_connections == 3
    grant = service.try_lock("reconcile:binance:BTC/USDT", 1)
    assert raw_redis.exists(f"{namespace}reconcile:binance:BTC/USDT")
    service.unlock(grant)
    service.close()

"""Building the lock service from settings or from a QuantMesh `distributed_lock` YAML block.

`build_lock_service("nop")` is the single-instance default. `build_lock_service("redis", url)`
checks the server before returning (reachable, `maxmemory-policy noeviction`) and raises
LockStartupError otherwise: a misconfigured multi-instance deployment must not start, and it
never falls back to the no-op lock.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any, Mapping
from urllib.parse import quote

from locking.base import LockService, LockStartupError
from locking.nop import NopLock
from locking.redis_lock import DEFAULT_NAMESPACE, RedisLock, redis_address

logger = logging.getLogger("quantmesh.locking")

BACKENDS = ("nop", "redis")
_NOP_OPTIONS = {"instance_id", "record_metrics"}


def build_lock_service(backend: str = "nop", redis_url: str | None = None, *, check: bool = True,
                       **options: Any) -> LockService:
    """The lock service named by `backend` ("nop" or "redis").

    Options go to the backend's constructor (for Redis: namespace, instance_id, socket_timeout,
    max_connections, ...); NopLock takes instance_id and record_metrics and ignores the Redis-only
    ones, so callers can pass one set of options whatever the backend. With check=True a Redis
    backend is checked at once.
    """
    name = (backend or "nop").strip().lower()
    if name == "nop":
        return NopLock(**{key: value for key, value in options.items() if key in _NOP_OPTIONS})
    if name == "redis":
        if not redis_url:
            raise LockStartupError("lock backend 'redis' needs a Redis URL (REDIS_URL)")
        service = RedisLock(redis_url, **options)
        if check:
            try:
                service.check_server()
            except BaseException:
                service.close()
                raise
        return service
    raise ValueError(f"unknown lock backend {backend!r}; expected one of: {', '.join(BACKENDS)}")


# --- the QuantMesh YAML block ---------------------------------------------------------------------

@dataclass(frozen=True)
class LockSettings:
    """A parsed `distributed_lock` block. `redis_url` may hold a password: it is kept out of repr."""

    backend: str = "nop"
    redis_url: str | None = field(default=None, repr=False)
    namespace: str = DEFAULT_NAMESPACE
    default_ttl: Decimal = Decimal(5)
    max_connections: int | None = None

    @property
    def redis_address(self) -> str | None:
        return redis_address(self.redis_url) if self.redis_url else None

    def build(self, *, check: bool = True, **options: Any) -> LockService:
        if self.backend == "redis":
            options = {"namespace": self.namespace, "max_connections": self.max_connections, **options}
        return build_lock_service(self.backend, self.redis_url, check=check, **options)


_BLOCK_KEYS = {"enabled", "type", "prefix", "default_ttl", "redis"}
_REDIS_KEYS = {"addr", "password", "db", "pool_size"}


def lock_settings_from_config(block: Mapping[str, Any] | None, *, where: str = "distributed_lock") -> LockSettings:
    """Parse a `distributed_lock` block:

        distributed_lock:
          enabled: true            # false (the default): single instance, NopLock
          type: redis              # the only backend supported
          prefix: "quantmesh:lock:"
          default_ttl: 5           # seconds
          redis: {addr: "localhost:6379", password: "", db: 0, pool_size: 10}

    Bad values raise ValueError naming the key. Unknown keys are logged and ignored (older
    QuantMesh documentation shows keys the program never read).
    """
    if block is None:
        block = {}
    if not isinstance(block, Mapping):
        raise ValueError(f"{where}: expected a mapping, got {type(block).__name__}")
    _warn_unknown(block, _BLOCK_KEYS, where)

    enabled = block.get("enabled", False)
    if not isinstance(enabled, bool):
        raise ValueError(f"{where}.enabled: expected true or false, got {enabled!r}")
    kind = block.get("type", "redis")
    if not isinstance(kind, str) or not kind.strip():
        raise ValueError(f"{where}.type: expected a backend name, got {kind!r}")
    kind = kind.strip().lower()
    if enabled and kind != "redis":
        raise ValueError(f"{where}.type: {kind!r} is not supported; the distributed lock backend is 'redis'")
    prefix = block.get("prefix", DEFAULT_NAMESPACE)
    if not isinstance(prefix, str) or not prefix:
        raise ValueError(f"{where}.prefix: expected a non-empty string, got {prefix!r}")
    default_ttl = _positive_seconds(block.get("default_ttl", 5), f"{where}.default_ttl")

    redis_block = block.get("redis") or {}
    if not isinstance(redis_block, Mapping):
        raise ValueError(f"{where}.redis: expected a mapping, got {type(redis_block).__name__}")
    _warn_unknown(redis_block, _REDIS_KEYS, f"{where}.redis")
    host, port = _host_port(redis_block.get("addr", "localhost:6379"), f"{where}.redis.addr")
    password = redis_block.get("password", "") or ""
    if not isinstance(password, str):
        raise ValueError(f"{where}.redis.password: expected a string")
    db = _int(redis_block.get("db", 0), f"{where}.redis.db", minimum=0)
    pool_size = _int(redis_block.get("pool_size", 10), f"{where}.redis.pool_size", minimum=1)

    if not enabled:
        return LockSettings(backend="nop", namespace=prefix, default_ttl=default_ttl)
    auth = f":{quote(password, safe='')}@" if password else ""
    url = f"redis://{auth}{host}:{port}/{db}"
    return LockSettings(backend="redis", redis_url=url, namespace=prefix, default_ttl=default_ttl,
                        max_connections=pool_size)


def _warn_unknown(block: Mapping[str, Any], known: set[str], where: str) -> None:
    unknown = sorted(str(key) for key in block if key not in known)
    if unknown:
        logger.warning("%s: ignoring unknown keys: %s", where, ", ".join(unknown))


def _positive_seconds(value: Any, where: str) -> Decimal:
    if isinstance(value, bool):
        raise ValueError(f"{where}: expected seconds, got {value!r}")
    try:
        seconds = Decimal(str(value))
    except InvalidOperation:
        raise ValueError(f"{where}: expected seconds, got {value!r}") from None
    if not seconds.is_finite() or seconds <= 0:
        raise ValueError(f"{where}: expected a positive number of seconds, got {value!r}")
    return seconds


def _int(value: Any, where: str, *, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{where}: expected an integer >= {minimum}, got {value!r}")
    return value


def _host_port(addr: Any, where: str) -> tuple[str, int]:
    if not isinstance(addr, str) or not addr.strip():
        raise ValueError(f"{where}: expected host:port, got {addr!r}")
    addr = addr.strip()
    if addr.startswith("["):  # [IPv6]:port
        host, _, rest = addr[1:].partition("]")
        port_text = rest[1:] if rest.startswith(":") else ""
        host_part = f"[{host}]"
    else:
        host, _, port_text = addr.rpartition(":") if ":" in addr else (addr, "", "")
        host_part = f"[{host}]" if ":" in host else host
    if not host:
        raise ValueError(f"{where}: expected host:port, got {addr!r}")
    port_text = port_text or "6379"
    if not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise ValueError(f"{where}: bad port in {addr!r}")
    return host_part, int(port_text)

"""Building the lock service from already-parsed settings: a backend name, a Redis URL and options.

`build_lock_service("nop")` is the single-instance default. `build_lock_service("redis", url)`
checks the server before returning (reachable, `maxmemory-policy noeviction`) and raises
LockStartupError otherwise: a misconfigured multi-instance deployment must not start, and it
never falls back to the no-op lock. Nothing here reads configuration: callers pass values they
have already read and checked (`locking.setup` passes Django's settings).
"""
from __future__ import annotations

from typing import Any

from locking.base import LockService, LockStartupError
from locking.nop import NopLock
from locking.redis_lock import RedisLock

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

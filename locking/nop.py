"""NopLock: the single-instance lock service. No network at all.

It excludes threads of this process only, with the same semantics as RedisLock: grants expire
after their TTL, a stale grant gets NotOwned, tokens strictly increase. It promises nothing across
processes; a second instance on the same database is stopped by the instance registry, and the
database fence and unique constraints still guard every write.
"""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass, replace

from locking.base import Attempt, Grant, LockService, NotOwned

# Expired, never-released holders are swept after this many acquires.
_SWEEP_EVERY = 1024


@dataclass(frozen=True)
class _Holder:
    token: int
    owner: str
    expires: float  # time.monotonic()


class NopLock(LockService):
    backend = "nop"

    def __init__(self, *, instance_id: str | None = None, record_metrics: bool = True) -> None:
        # One clock and no network: the deadline is the expiry itself, no drift margin needed.
        super().__init__(instance_id=instance_id, drift_factor=0.0, record_metrics=record_metrics)
        self._state = threading.Lock()
        self._holders: dict[str, _Holder] = {}
        self._waiting: dict[str, tuple[threading.Condition, int]] = {}
        # One counter for all keys: strictly increasing overall, hence per key, with no per-key state.
        self._last_token = 0
        self._acquires = 0

    def deadline(self, sent: float, ttl_ms: int) -> float:
        return sent + ttl_ms / 1000

    def _acquire(self, key: str, ttl_ms: int, owner: str, floor: int, timeout: float | None) -> Attempt:
        conflicted = False
        with self._state:
            now = time.monotonic()
            end = now + (timeout or 0.0)
            while True:
                holder = self._holders.get(key)
                if holder is None or holder.expires <= now:
                    return Attempt(self._grant(key, ttl_ms, owner, floor, now), conflicted)
                if holder.owner == owner:
                    return Attempt(self._as_grant(key, holder), conflicted)
                conflicted = True
                if now >= end:
                    return Attempt(None, conflicted)
                self._wait(key, min(end, holder.expires) - now)
                now = time.monotonic()

    def _release(self, grant: Grant) -> None:
        with self._state:
            self._owned(grant)
            del self._holders[grant.key]
            waiting = self._waiting.get(grant.key)
            if waiting is not None:
                waiting[0].notify()

    def _extend(self, grant: Grant, ttl_ms: int) -> Grant:
        with self._state:
            holder = self._owned(grant)
            now = time.monotonic()
            self._holders[grant.key] = replace(holder, expires=now + ttl_ms / 1000)
        return replace(grant, ttl_ms=ttl_ms, deadline=self.deadline(now, ttl_ms))

    def _seed_fence(self, key: str, floor: int) -> int:
        with self._state:
            self._last_token = max(self._last_token, floor)
            return self._last_token

    # -- helpers; all called with self._state held --

    def _grant(self, key: str, ttl_ms: int, owner: str, floor: int, now: float) -> Grant:
        self._last_token = max(self._last_token, floor) + 1
        holder = _Holder(token=self._last_token, owner=owner, expires=now + ttl_ms / 1000)
        self._holders[key] = holder
        self._acquires += 1
        if self._acquires % _SWEEP_EVERY == 0:
            self._sweep(now)
        return Grant(key=key, token=holder.token, owner=owner, acquired=now, ttl_ms=ttl_ms,
                     deadline=holder.expires)

    def _as_grant(self, key: str, holder: _Holder) -> Grant:
        now = time.monotonic()
        ttl_ms = max(0, round((holder.expires - now) * 1000))
        return Grant(key=key, token=holder.token, owner=holder.owner, acquired=now, ttl_ms=ttl_ms,
                     deadline=holder.expires)

    def _owned(self, grant: Grant) -> _Holder:
        holder = self._holders.get(grant.key)
        now = time.monotonic()
        if holder is None or holder.expires <= now:
            raise NotOwned(grant.key, grant.token)
        if holder.token != grant.token or holder.owner != grant.owner:
            raise NotOwned(grant.key, grant.token, holder.token)
        return holder

    def _wait(self, key: str, seconds: float) -> None:
        condition, count = self._waiting.get(key) or (threading.Condition(self._state), 0)
        self._waiting[key] = (condition, count + 1)
        try:
            condition.wait(seconds)
        finally:
            condition, count = self._waiting[key]
            if count == 1:
                del self._waiting[key]
            else:
                self._waiting[key] = (condition, count - 1)

    def _sweep(self, now: float) -> None:
        expired = [key for key, holder in self._holders.items() if holder.expires <= now]
        for key in expired:
            del self._holders[key]

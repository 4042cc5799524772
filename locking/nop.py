"""NopLock: the single-instance lock service. No network at all.

It excludes threads of this process only, with the same semantics as RedisLock: grants expire
after their TTL, a stale grant gets NotOwned, tokens strictly increase, asking again for a key one
already holds is an error. It promises nothing across processes; a second instance on the same
database is stopped by the instance registry, and the database fence and unique constraints still
guard every write.

This lock sits on every order and cancel of a single-instance bot, so its common case (a free key,
then its release) is one short critical section each way: the holder table is the only book kept,
and the shared base-class bookkeeping is used only on the rare paths (waiting, conflicts).
"""
from __future__ import annotations

import threading
import time

from locking import metrics
from locking.base import (
    LOST,
    AlreadyHeld,
    Attempt,
    Grant,
    LockService,
    NotOwned,
    Seconds,
    _check_floor,
    _check_key,
    record_event,
    ttl_to_ms,
)

# Expired, never-released holders are swept after this many acquires.
_SWEEP_EVERY = 1024

_monotonic = time.monotonic


class NopLock(LockService):
    backend = "nop"

    def __init__(self, *, instance_id: str | None = None, record_metrics: bool = True) -> None:
        # One clock and no network: the deadline is the expiry itself, no drift margin needed.
        super().__init__(instance_id=instance_id, drift_factor=0.0, record_metrics=record_metrics)
        self._state = threading.Lock()
        # key -> the grant holding it. A grant's deadline is its expiry (no drift on one clock).
        self._holders: dict[str, Grant] = {}
        self._waiting: dict[str, tuple[threading.Condition, int]] = {}
        # One counter for all keys: strictly increasing overall, hence per key, with no per-key state.
        self._last_token = 0
        self._acquires = 0

    def deadline(self, sent: float, ttl_ms: int) -> float:
        return sent + ttl_ms / 1000

    # -- the hot path: acquire a free key, release it --

    def _acquire_recorded(self, key: str, ttl: Seconds, timeout: float | None, floor: int) -> Grant | None:
        self._check_open()
        _check_key(key)
        _check_floor(floor)
        ttl_ms = ttl_to_ms(ttl)
        owner = self.owner_id()
        with self._state:
            now = _monotonic()
            holder = self._holders.get(key)
            if holder is None or holder.deadline <= now:
                grant = self._grant(key, ttl_ms, owner, floor, now)
            elif holder.owner == owner:
                raise AlreadyHeld(key)
            else:
                grant = None
        if grant is None:
            return self._contended(key, ttl_ms, owner, floor, timeout)
        if self.record_metrics:
            metrics.key_children(key)[0].inc()
        return grant

    def unlock(self, grant: Grant) -> bool:
        self._check_open()
        key = grant.key
        with self._state:
            holder = self._holders.get(key)
            if holder is not None and holder.token == grant.token and holder.owner == grant.owner:
                now = _monotonic()
                if holder.deadline > now:
                    del self._holders[key]
                    waiting = self._waiting.get(key)
                    if waiting is not None:
                        waiting[0].notify()
                    error = None
                else:
                    error = NotOwned(key, grant.token)
            else:
                error = NotOwned(key, grant.token, holder.token if holder is not None and
                                 holder.deadline > _monotonic() else None)
        if self.record_metrics:
            held = _monotonic() - grant.acquired
            metrics.key_children(key)[1].observe(held if held > 0 else 0.0)
        if error is not None:
            record_event(LOST, key, owner=grant.owner, token=grant.token, detail=str(error))
            raise error
        return True

    # -- the rare paths --

    def _contended(self, key: str, ttl_ms: int, owner: str, floor: int, timeout: float | None) -> Grant | None:
        label = metrics.metric_label(key) if self.record_metrics else ""
        grant = None if timeout is None else self._acquire(key, ttl_ms, owner, floor, timeout).grant
        self._record_attempt(key, label, owner, timeout, grant, conflicted=True)
        return grant

    def _acquire(self, key: str, ttl_ms: int, owner: str, floor: int, timeout: float | None) -> Attempt:
        conflicted = False
        with self._state:
            now = _monotonic()
            end = now + (timeout or 0.0)
            while True:
                holder = self._holders.get(key)
                if holder is None or holder.deadline <= now:
                    return Attempt(self._grant(key, ttl_ms, owner, floor, now), conflicted)
                if holder.owner == owner:
                    raise AlreadyHeld(key)
                conflicted = True
                if now >= end:
                    return Attempt(None, conflicted)
                self._wait(key, min(end, holder.deadline) - now)
                now = _monotonic()

    def _release(self, grant: Grant) -> None:  # unlock() above does the work; kept for the interface
        self.unlock(grant)

    def _extend(self, grant: Grant, ttl_ms: int) -> Grant:
        with self._state:
            self._owned(grant)
            renewed = grant._replace(ttl_ms=ttl_ms, deadline=_monotonic() + ttl_ms / 1000)
            self._holders[grant.key] = renewed
        return renewed

    # -- helpers; all called with self._state held --

    def _grant(self, key: str, ttl_ms: int, owner: str, floor: int, now: float) -> Grant:
        token = self._last_token = (floor if floor > self._last_token else self._last_token) + 1
        grant = Grant(key, token, owner, now, ttl_ms, now + ttl_ms / 1000)
        self._holders[key] = grant
        self._acquires += 1
        if self._acquires % _SWEEP_EVERY == 0:
            self._sweep(now)
        return grant

    def _owned(self, grant: Grant) -> Grant:
        holder = self._holders.get(grant.key)
        if holder is None or holder.deadline <= _monotonic():
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
        expired = [key for key, holder in self._holders.items() if holder.deadline <= now]
        for key in expired:
            del self._holders[key]

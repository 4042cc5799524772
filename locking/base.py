"""The lock service interface: grants with fencing tokens, errors, events and the shared bookkeeping.

A lock here is a lease: it is granted for a TTL and ends at release or when the TTL runs out,
whichever comes first. A lease cannot by itself guarantee mutual exclusion when a holder pauses
(GC, SIGSTOP, a slow network), so every grant carries a fencing token that strictly increases per
key; whatever the lock protects must check that token (the database fence) before it writes.

Backends (`NopLock`, `RedisLock`) implement three small hooks; `LockService` turns them into the
public API and records metrics and events the same way for every backend:

    grant = locks.try_lock(key, ttl)           # Grant, or None when the key is held
    pending = locks.request(key, ttl)          # try_lock's question, sent; the answer comes later:
    grant = pending.wait()                     #   the same Grant or None
    grant = locks.lock(key, ttl, timeout)      # waits up to `timeout`; raises LockBusy
    locks.extend(grant, ttl)                   # replace the TTL; raises NotOwned
    locks.unlock(grant)                        # True; raises NotOwned
    with locks.held(key, ttl, timeout) as grant: ...

TTLs and timeouts are seconds (int, float or Decimal); backends work in whole milliseconds.
Locks are not reentrant: an owner (a thread of one service object) that asks again for a key it
holds gets `AlreadyHeld` at once instead of waiting for itself.
"""
from __future__ import annotations

import logging
import math
import os
import socket
import threading
import time
import uuid
from abc import ABC, abstractmethod
from contextlib import contextmanager
from dataclasses import dataclass, field
from decimal import ROUND_CEILING, Decimal
from typing import Callable, Iterator, NamedTuple, Union

from locking import metrics

logger = logging.getLogger("quantmesh.locking")

Seconds = Union[int, float, Decimal]


# --- errors -----------------------------------------------------------------------------------------

class LockError(Exception):
    """Base class of the lock service's errors."""


class LockBusy(LockError):
    """The lock is held by someone else (a held() that tried once, or lock() past its timeout)."""

    def __init__(self, key: str, timeout: Seconds | None = None) -> None:
        self.key = key
        self.timeout = timeout
        waited = "" if timeout is None else f" after waiting {timeout} s"
        super().__init__(f"lock {key!r} is busy{waited}")


class NotOwned(LockError):
    """Release or extend with a grant that no longer owns the lock; nothing was changed.

    `holder_token` is the token of the grant holding the key now, or None when the key is free
    (the grant expired, or it was already released).
    """

    def __init__(self, key: str, token: int, holder_token: int | None = None) -> None:
        self.key = key
        self.token = token
        self.holder_token = holder_token
        now = "is free" if holder_token is None else f"is held by token {holder_token}"
        super().__init__(f"lock {key!r} is not owned by token {token}: it {now}")


class LockBackendUnavailable(LockError):
    """The lock backend could not be reached or failed. Callers must fail closed: no lock, no action."""


class AlreadyHeld(LockError):
    """The caller already holds this key; the locks are not reentrant."""

    def __init__(self, key: str) -> None:
        self.key = key
        super().__init__(f"lock {key!r} is already held by this owner (locks are not reentrant)")


class LockStartupError(LockError):
    """A start-up precondition failed: backend unreachable, unsafe eviction policy, bad settings."""


# --- grants -----------------------------------------------------------------------------------------

class Grant(NamedTuple):
    """One successful acquire. Immutable; `grant._replace(ttl_ms=...)` makes a changed copy.

    `acquired` and `deadline` are `time.monotonic()` values. `acquired` is when the acquire request
    was sent, so the deadline (acquired + TTL - clock-drift margin) is never later than the
    backend's own expiry. `is_valid()` turns False at the deadline without asking the backend, so a
    holder cut off from Redis still knows when to stop. It is a named tuple because one is built on
    every acquire.
    """

    key: str
    token: int
    owner: str
    acquired: float
    ttl_ms: int
    deadline: float
    server_time_us: int | None = None  # backend clock at the grant (Redis TIME), for histories

    def is_valid(self) -> bool:
        return time.monotonic() < self.deadline

    def remaining(self) -> float:
        """Seconds left before the deadline (0 when past it)."""
        return max(0.0, self.deadline - time.monotonic())


def ttl_to_ms(ttl: Seconds) -> int:
    """A TTL in seconds as whole milliseconds, rounded up; at least 1 ms."""
    if type(ttl) is int:  # the common case, exact
        ms = ttl * 1000
    elif type(ttl) is float and math.isfinite(ttl):
        # round() first drops binary noise: 0.29 * 1000 is 290.00000000000006, which is 290 ms.
        ms = math.ceil(round(ttl * 1000, 6))
    else:
        seconds = _as_decimal(ttl, "ttl")
        ms = int((seconds * 1000).to_integral_value(rounding=ROUND_CEILING))
    if ms < 1:
        raise ValueError(f"ttl must be positive, got {ttl!r}")
    return ms


def to_seconds(value: Seconds, name: str = "timeout") -> float:
    seconds = _as_decimal(value, name)
    if seconds < 0:
        raise ValueError(f"{name} must not be negative, got {value!r}")
    return float(seconds)


def _as_decimal(value: Seconds, name: str) -> Decimal:
    if isinstance(value, bool) or not isinstance(value, (int, float, Decimal)):
        raise TypeError(f"{name} must be seconds as int, float or Decimal, got {value!r}")
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError(f"{name} must be finite, got {value!r}")
    if isinstance(value, Decimal) and not value.is_finite():
        raise ValueError(f"{name} must be finite, got {value!r}")
    # str() keeps the float's shortest repr, so 0.25 s is exactly 250 ms.
    return Decimal(str(value)) if isinstance(value, float) else Decimal(value)


def _check_key(key: str) -> None:
    if not isinstance(key, str) or not key or key != key.strip():
        raise ValueError(f"lock key must be a non-empty string without surrounding spaces, got {key!r}")


# Tokens travel through Lua numbers (doubles) in Redis, exact up to 2**53.
MAX_TOKEN = 2**53 - 1


def _check_floor(floor: int) -> None:
    if floor.__class__ is int and 0 <= floor < MAX_TOKEN:  # the common case, decided at once
        return
    if isinstance(floor, bool) or not isinstance(floor, int) or not 0 <= floor < MAX_TOKEN:
        raise ValueError(f"fence floor must be an int in [0, 2**53 - 1), got {floor!r}")


# --- events -----------------------------------------------------------------------------------------

CONFLICT = "conflict"  # try_lock found the key held
TIMEOUT = "timeout"  # lock() gave up after its timeout
BACKEND_ERROR = "backend_error"  # the backend failed; the caller must fail closed
LOST = "lost"  # release or extend answered NotOwned: the lease ended before its holder was done
FENCED = "fenced"  # a write was refused by the fence (recorded by the code that owns the fence)


@dataclass(frozen=True)
class LockEventMessage:
    """One lock event as `record_event()` hands it to the event sink (the log by default;
    `locking.recorder` stores it as a `locking.models.LockEvent` row)."""

    kind: str
    key: str
    owner: str = ""
    token: int | None = None
    detail: str = ""
    at: float = field(default_factory=time.time)  # wall clock, for display only


EventSink = Callable[[LockEventMessage], None]

_event_sink: EventSink | None = None

_EVENT_LEVELS = {CONFLICT: logging.DEBUG, BACKEND_ERROR: logging.ERROR}


def set_event_sink(sink: EventSink | None) -> None:
    """Send lock events to `sink` (e.g. a writer of LockEvent rows); None restores logging only.

    The sink is called synchronously on the locking path, so it must be quick; its exceptions are
    logged and otherwise ignored.
    """
    global _event_sink
    _event_sink = sink


def log_event(event: LockEventMessage) -> None:
    level = _EVENT_LEVELS.get(event.kind, logging.WARNING)
    logger.log(level, "lock %s key=%s owner=%s token=%s %s",
               event.kind, event.key, event.owner, event.token, event.detail)


def record_event(kind: str, key: str, *, owner: str = "", token: int | None = None, detail: str = "") -> None:
    event = LockEventMessage(kind=kind, key=key, owner=owner, token=token, detail=detail)
    sink = _event_sink or log_event
    try:
        sink(event)
    except Exception:
        logger.exception("lock event sink failed for %s", event)


def warn_unreleased(grant: Grant, exc: Exception) -> None:
    """Log a release that unlock_nowait() could not confirm: the lock was lost, or the backend failed."""
    if isinstance(exc, NotOwned):
        logger.warning("lock %s (token %s) expired before its release", grant.key, grant.token)
    else:
        logger.warning("lock %s release failed (it expires by its TTL): %s", grant.key, exc)


# --- the service ------------------------------------------------------------------------------------

# Forks of this process so far: a forked child counts one more, so its threads get new owner ids
# (cheaper than asking the kernel for the pid on every acquire).
_forks = 0


def _count_fork() -> None:
    global _forks
    _forks += 1


os.register_at_fork(after_in_child=_count_fork)

# Bookkeeping of grants never released is pruned once it holds this many entries.
_PRUNE_AT = 4096


class Attempt(NamedTuple):
    """What a backend's acquire returns: the grant (None if not acquired), and whether the key was
    found held by another owner at least once."""

    grant: Grant | None
    conflicted: bool


class PendingGrant:
    """The answer to `LockService.request()`: `wait()` returns what try_lock() would have (the
    grant, or None when another owner holds the key) and raises LockBackendUnavailable if the
    backend failed. The outcome is recorded (metrics, events, the service's books) once, when the
    answer arrives. Only the thread that asked may wait."""

    __slots__ = ("_fetch", "_thread", "_answered", "_grant", "_error")

    def __init__(self, fetch: Callable[[], object] | None = None) -> None:
        self._fetch = fetch  # reads the answer, then calls answer() or fail(); what it returns is unused
        self._thread = threading.get_ident()
        self._answered = False
        self._grant: Grant | None = None
        self._error: LockBackendUnavailable | None = None

    @classmethod
    def answered(cls, grant: Grant | None) -> PendingGrant:
        pending = cls()
        pending.answer(grant)
        return pending

    def answer(self, grant: Grant | None) -> None:
        self._grant, self._answered = grant, True

    def fail(self, error: LockBackendUnavailable) -> None:
        self._error, self._answered = error, True

    def wait(self) -> Grant | None:
        if not self._answered:
            if threading.get_ident() != self._thread:
                raise LockError("a lock request's answer can only be read by the thread that sent it")
            assert self._fetch is not None  # only answered() makes one without a fetch, and answers it
            self._fetch()
            if not self._answered:  # its connection was closed before the answer could be read
                self.fail(LockBackendUnavailable("the answer to a lock request was lost with its connection"))
        if self._error is not None:
            raise self._error
        return self._grant


class LockService(ABC):
    """Public API and bookkeeping shared by all backends.

    An owner is one thread of one service object (and one process: a forked child gets new owner
    ids). `drift_factor` shortens every grant's local deadline by `ttl * drift_factor + 2 ms` to
    cover clock drift between this host and the backend.
    """

    backend = "abstract"

    def __init__(self, *, instance_id: str | None = None, drift_factor: float = 0.01,
                 record_metrics: bool = True) -> None:
        if not 0 <= drift_factor < 0.5:
            raise ValueError(f"drift_factor must be in [0, 0.5), got {drift_factor!r}")
        self.instance_id = instance_id or f"{socket.gethostname()}-{os.getpid()}"
        self.drift_factor = drift_factor
        self.record_metrics = record_metrics
        self._local = threading.local()
        self._mutex = threading.Lock()
        self._held: dict[tuple[str, str], Grant] = {}
        self._unconfirmed_releases: set[tuple[str, int]] = set()
        self._closed = False

    # -- identity and time --

    def owner_id(self) -> str:
        """The calling thread's owner id for this service (new after a fork)."""
        local = self._local
        if getattr(local, "forks", -1) != _forks:
            pid = os.getpid()
            local.forks = _forks
            local.owner = f"{self.instance_id}:{pid}:{uuid.uuid4().hex[:12]}"
        return local.owner

    def deadline(self, sent: float, ttl_ms: int) -> float:
        ttl = ttl_ms / 1000
        return sent + ttl - (ttl * self.drift_factor + 0.002)

    # -- public API --

    def try_lock(self, key: str, ttl: Seconds, *, floor: int = 0) -> Grant | None:
        """One attempt: the grant, or None when another owner holds the key.

        `floor`: the fencing token the caller has already seen for this key (e.g. stored in the
        database); the token granted is always greater than it.
        """
        return self._acquire_recorded(key, ttl, None, floor)

    def request(self, key: str, ttl: Seconds, *, floor: int = 0) -> PendingGrant:
        """try_lock() in two halves: ask now, read the answer with `wait()` later, so the caller
        can do work that needs no lock while the answer is on its way (the order path writes its
        intent row meanwhile). Nothing the lock protects may start before wait() returned a grant.
        The thread may make other lock calls in between. LockBackendUnavailable comes from
        either half. Backends without a network answer at once."""
        return PendingGrant.answered(self.try_lock(key, ttl, floor=floor))

    def lock(self, key: str, ttl: Seconds, timeout: Seconds, *, floor: int = 0) -> Grant:
        """Wait up to `timeout` seconds for the key; raise LockBusy when it stays held."""
        grant = self._acquire_recorded(key, ttl, to_seconds(timeout), floor)
        if grant is None:
            raise LockBusy(key, timeout)
        return grant

    def unlock(self, grant: Grant) -> bool:
        """Release the grant: True, or NotOwned when it no longer holds the key (nothing changed)."""
        self._check_open()
        try:
            self._release(grant)
        except NotOwned as exc:
            retried = self._forget(grant)
            self._observe_hold(grant)
            if not self._record_not_owned(grant, exc, retried):
                return True
            raise
        except LockBackendUnavailable as exc:
            # Keep the grant: the release may or may not have happened, and the caller may retry.
            self._record_release_failure(grant, exc)
            raise
        self._forget(grant)
        self._observe_hold(grant)
        return True

    def unlock_nowait(self, grant: Grant) -> None:
        """Release the grant for a caller that would only log the outcome (the order and cancel
        paths): never raises NotOwned or LockBackendUnavailable. A lock found lost, or a release
        that failed, is logged and recorded as unlock() records it. A backend may send the release
        at once and read its answer later (RedisLock: at this thread's next lock operation), so
        the caller does not wait a round trip for an answer it would not act on."""
        try:
            self.unlock(grant)
        except (NotOwned, LockBackendUnavailable) as exc:
            warn_unreleased(grant, exc)

    def unlock_deferred(self, grant: Grant) -> None:
        """unlock_nowait() for a thread about to ask for another lock: the release may wait and
        go out with this thread's next request() (RedisLock: in the same script, so an order that
        follows another costs one message to Redis, not two). Until then the key stays held, so
        the thread must call flush_deferred() before it idles (the engine: after placing a tick's
        orders). Holding a key longer never lets two holders in; the lock's TTL still bounds it.
        Backends without a network release at once."""
        self.unlock_nowait(grant)

    def flush_deferred(self) -> None:
        """Send the release this thread deferred with unlock_deferred(), if any, without waiting
        for its answer."""

    def extend(self, grant: Grant, ttl: Seconds) -> Grant:
        """Set the lease's TTL to `ttl` from now (replace, not add); NotOwned if it was lost."""
        self._check_open()
        ttl_ms = ttl_to_ms(ttl)
        try:
            renewed = self._extend(grant, ttl_ms)
        except NotOwned as exc:
            self._forget(grant)
            record_event(LOST, grant.key, owner=grant.owner, token=grant.token, detail=str(exc))
            raise
        except LockBackendUnavailable as exc:
            record_event(BACKEND_ERROR, grant.key, owner=grant.owner, token=grant.token, detail=str(exc))
            raise
        with self._mutex:
            mine = self._held.get((grant.owner, grant.key))
            if mine is not None and mine.token == grant.token:
                self._held[(grant.owner, grant.key)] = renewed
        return renewed

    @contextmanager
    def held(self, key: str, ttl: Seconds, timeout: Seconds | None = None, *,
             floor: int = 0) -> Iterator[Grant]:
        """Hold the lock for the block and always release it.

        `timeout=None` tries once. Raises LockBusy when the lock is not acquired. If the block
        succeeded but the lease was lost meanwhile, the release raises NotOwned; if the block
        raised, a failed release is logged and the block's exception propagates.
        """
        if timeout is None:
            grant = self.try_lock(key, ttl, floor=floor)
            if grant is None:
                raise LockBusy(key)
        else:
            grant = self.lock(key, ttl, timeout, floor=floor)
        try:
            yield grant
        except BaseException:
            try:
                self.unlock(grant)
            except LockError as exc:
                logger.warning("release of %s after an error failed: %s", key, exc)
            raise
        self.unlock(grant)

    def close(self) -> None:
        """Release the backend's resources. Grants still held expire at their TTL."""
        if not self._closed:
            self._closed = True
            self._close()

    def __enter__(self) -> LockService:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- backend hooks --

    @abstractmethod
    def _acquire(self, key: str, ttl_ms: int, owner: str, floor: int, timeout: float | None) -> Attempt:
        """Acquire `key` for `owner`: one attempt when timeout is None, else wait up to timeout.

        If the key is already held by this same owner (its earlier reply was lost), return that
        grant rather than refuse it.
        """

    @abstractmethod
    def _release(self, grant: Grant) -> int | None:
        """Delete the key if the grant still holds it; raise NotOwned otherwise.

        Returns the backend's clock at the release in microseconds, when it has one.
        """

    @abstractmethod
    def _extend(self, grant: Grant, ttl_ms: int) -> Grant:
        """Set the key's TTL to ttl_ms if the grant still holds it; raise NotOwned otherwise."""

    def _close(self) -> None:
        """Release backend resources."""

    # -- bookkeeping --

    def _acquire_recorded(self, key: str, ttl: Seconds, timeout: float | None, floor: int) -> Grant | None:
        ttl_ms, owner, label = self._before_acquire(key, ttl, floor)
        try:
            grant, conflicted = self._acquire(key, ttl_ms, owner, floor, timeout)
        except LockBackendUnavailable as exc:
            self._acquire_failed(key, owner, label, exc)
            raise
        return self._acquired(key, label, owner, timeout, grant, conflicted)

    def _before_acquire(self, key: str, ttl: Seconds, floor: int) -> tuple[int, str, str]:
        """Check an acquire's arguments; return its TTL in ms, the owner and the metric label."""
        self._check_open()
        _check_key(key)
        _check_floor(floor)
        ttl_ms = ttl_to_ms(ttl)
        owner = self.owner_id()
        self._refuse_reentry(owner, key)
        return ttl_ms, owner, metrics.metric_label(key) if self.record_metrics else ""

    def _acquire_failed(self, key: str, owner: str, label: str, exc: LockBackendUnavailable) -> None:
        self._count_acquire(label, "error")
        record_event(BACKEND_ERROR, key, owner=owner, detail=str(exc))

    def _acquired(self, key: str, label: str, owner: str, timeout: float | None, grant: Grant | None,
                  conflicted: bool) -> Grant | None:
        """Record an acquire's outcome and put a grant on the books."""
        self._record_attempt(key, label, owner, timeout, grant, conflicted)
        if grant is None:
            return None
        with self._mutex:
            self._held[(owner, key)] = grant
            if len(self._held) > _PRUNE_AT:
                self._prune()
        return grant

    def _record_attempt(self, key: str, label: str, owner: str, timeout: float | None, grant: Grant | None,
                        conflicted: bool) -> None:
        """Count an acquire's outcome (and a conflict, if it met one); record busy and timeout events."""
        if conflicted and self.record_metrics:
            metrics.record_conflict(label)
        if grant is not None:
            self._count_acquire(label, "success")
        elif timeout is None:
            self._count_acquire(label, "busy")
            record_event(CONFLICT, key, owner=owner)
        else:
            self._count_acquire(label, "timeout")
            record_event(TIMEOUT, key, owner=owner, detail=f"waited {timeout:.3f} s")

    def _refuse_reentry(self, owner: str, key: str) -> None:
        with self._mutex:
            mine = self._held.get((owner, key))
            if mine is None:
                return
            if mine.is_valid():
                raise AlreadyHeld(key)
            # Past its deadline: the caller may ask again (the backend decides if it is still ours).
            del self._held[(owner, key)]

    def _forget(self, grant: Grant) -> bool:
        """Drop the grant from this service's books; True if an earlier release of it had failed."""
        with self._mutex:
            mine = self._held.get((grant.owner, grant.key))
            if mine is not None and mine.token == grant.token:
                del self._held[(grant.owner, grant.key)]
            if not self._unconfirmed_releases:
                return False
            ident = (grant.key, grant.token)
            retried = ident in self._unconfirmed_releases
            self._unconfirmed_releases.discard(ident)
            return retried

    @staticmethod
    def _record_not_owned(grant: Grant, exc: NotOwned, retried: bool) -> bool:
        """Record a release that found the key not ours; True when that means the lock was lost.
        `retried`: an earlier release of this grant failed with its outcome unknown. If the key
        is now free, that release most likely went through: not a lost lock."""
        if retried and exc.holder_token is None:
            return False
        record_event(LOST, grant.key, owner=grant.owner, token=grant.token, detail=str(exc))
        return True

    def _record_release_failure(self, grant: Grant, exc: LockBackendUnavailable) -> None:
        """Remember a release whose outcome is unknown (see _record_not_owned) and record it."""
        with self._mutex:
            self._unconfirmed_releases.add((grant.key, grant.token))
        record_event(BACKEND_ERROR, grant.key, owner=grant.owner, token=grant.token, detail=str(exc))

    def _prune(self) -> None:
        """Forget grants past their deadline that were never released (called with the mutex held)."""
        now = time.monotonic()
        for ident, grant in list(self._held.items()):
            if grant.deadline <= now:
                del self._held[ident]
        if len(self._unconfirmed_releases) > _PRUNE_AT:
            self._unconfirmed_releases.clear()

    def _count_acquire(self, label: str, status: str) -> None:
        if self.record_metrics:
            metrics.record_acquire(label, status)

    def _observe_hold(self, grant: Grant) -> None:
        if self.record_metrics:
            metrics.record_hold(metrics.metric_label(grant.key), time.monotonic() - grant.acquired)

    def _check_open(self) -> None:
        if self._closed:
            raise LockError(f"{type(self).__name__} is closed")

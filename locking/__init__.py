"""Lock service: NopLock for one instance, fenced RedisLock for several. See locking.base."""
from locking.base import (
    AlreadyHeld,
    Grant,
    LockBackendUnavailable,
    LockBusy,
    LockError,
    LockEventMessage,
    LockService,
    LockStartupError,
    NotOwned,
    record_event,
    set_event_sink,
)
from locking.factory import build_lock_service

__all__ = [
    "AlreadyHeld",
    "Grant",
    "LockBackendUnavailable",
    "LockBusy",
    "LockError",
    "LockEventMessage",
    "LockService",
    "LockStartupError",
    "NotOwned",
    "build_lock_service",
    "record_event",
    "set_event_sink",
]

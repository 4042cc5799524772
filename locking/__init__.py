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
from locking.factory import LockSettings, build_lock_service, lock_settings_from_config

__all__ = [
    "AlreadyHeld",
    "Grant",
    "LockBackendUnavailable",
    "LockBusy",
    "LockError",
    "LockEventMessage",
    "LockService",
    "LockSettings",
    "LockStartupError",
    "NotOwned",
    "build_lock_service",
    "lock_settings_from_config",
    "record_event",
    "set_event_sink",
]

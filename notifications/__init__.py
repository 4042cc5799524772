"""Notifications to the operator through apprise (Telegram, Discord, Slack, e-mail, ntfy,
webhooks...): `notify()` from anywhere, never blocking and never raising; see `sender` for delivery
and `config` for the settings."""
from __future__ import annotations

import logging
import os
import threading
from contextlib import contextmanager
from decimal import Decimal

log = logging.getLogger("quantmesh.notify")
_hub = None
_lock = threading.Lock()
_suppressed = False


def hub():
    """This process's hub, made from the settings on first use; None without any channel."""
    global _hub
    if _suppressed:
        return None
    current = _hub
    if current is not None and current.pid == os.getpid():
        return current
    from django.conf import settings

    config = getattr(settings, "QM_NOTIFY_CONFIG", None)
    if config is None or not config.enabled:
        return None
    with _lock:
        if _hub is None or _hub.pid != os.getpid():
            from notifications.sender import Hub

            _hub = Hub(config, instance_id=settings.QM_INSTANCE_ID)
        return _hub


@contextmanager
def suppressed():
    """Send nothing from this process meanwhile (a backtest: its events are history)."""
    global _suppressed
    before, _suppressed = _suppressed, True
    try:
        yield
    finally:
        _suppressed = before


def install(config, *, instance_id: str = "test"):
    """Replace this process's hub (tests, and `notify --test` with its own channels)."""
    global _hub
    from notifications.sender import Hub

    with _lock:
        old, _hub = _hub, Hub(config, instance_id=instance_id)
    if old is not None and old.pid == os.getpid():
        old.close(timeout=1)
    return _hub


def uninstall() -> None:
    global _hub
    with _lock:
        old, _hub = _hub, None
    if old is not None and old.pid == os.getpid():
        old.close(timeout=1)


def notify(kind: str, text: str, *, subject: str = "", key: str | None = None, shared: bool = False) -> None:
    """Tell the operator. Returns at once; a problem here is logged, never raised."""
    try:
        current = hub()
        if current is not None:
            current.emit(kind, text, subject=subject, key=key, shared=shared)
    except Exception:
        log.exception("notification %s could not be queued", kind)


def round_trips(subject: str, *, count: int, profit: Decimal, quote: str) -> None:
    try:
        current = hub()
        if current is not None:
            current.round_trips(subject, count=count, profit=profit, quote=quote)
    except Exception:
        log.exception("round trips of %s could not be queued", subject)


def notify_on_commit(kind: str, text: str, **kwargs) -> None:
    """`notify` once the current transaction commits (at once outside one)."""
    from django.db import transaction

    transaction.on_commit(lambda: notify(kind, text, **kwargs))


def enabled() -> bool:
    return hub() is not None


def _config():
    current = hub()
    if current is not None:
        return current.config
    from notifications.config import NotifyConfig

    return NotifyConfig()


def error_streak() -> int:
    """Failed ticks in a row before the operator hears of repeated exchange errors."""
    return _config().error_streak


def stream_down_seconds() -> float:
    return _config().stream_down_seconds


def summary_hour() -> int:
    return _config().summary_hour


def close(timeout: float = 10.0) -> None:
    """Send what is queued and batched before the process exits."""
    current = _hub
    if current is not None and current.pid == os.getpid():
        current.close(timeout=timeout)

"""Writes lock events to the database (the admin's "lock conflicts" page), bounded in size."""
from __future__ import annotations

import logging
from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import F
from django.utils import timezone

from locking import base
from locking.metrics import metric_label
from locking.models import LockEvent

log = logging.getLogger("quantmesh.locking")
FOLD_WINDOW = timedelta(seconds=60)


def record(event: base.LockEventMessage, *, instance_id: str) -> None:
    """Store one event; a repeat of the same (kind, key, instance) within a minute bumps the
    count of the existing row instead of adding a new one."""
    base.log_event(event)
    now = timezone.now()
    with transaction.atomic():
        updated = LockEvent.objects.filter(
            kind=event.kind, key=event.key[:200], instance_id=instance_id, last_seen_at__gte=now - FOLD_WINDOW
        ).update(count=F("count") + 1, last_seen_at=now, detail=event.detail[:300], token=event.token)
        if not updated:
            LockEvent.objects.create(
                kind=event.kind, key=event.key[:200], label=metric_label(event.key)[:120], instance_id=instance_id,
                token=event.token, detail=event.detail[:300], created_at=now, last_seen_at=now,
            )


def install(instance_id: str) -> None:
    """Route lock events of this process to the database (and the log)."""

    def sink(event: base.LockEventMessage) -> None:
        try:
            record(event, instance_id=instance_id)
        except Exception as exc:  # the lock path must never fail because of its audit trail
            log.warning("could not record lock event %s %s: %s", event.kind, event.key, exc)

    base.set_event_sink(sink)


def prune(now=None) -> int:
    """Delete events older than the retention period; returns how many."""
    now = now or timezone.now()
    cutoff = now - timedelta(days=settings.QM_LOCK_EVENT_RETENTION_DAYS)
    deleted, _ = LockEvent.objects.filter(last_seen_at__lt=cutoff).delete()
    return deleted

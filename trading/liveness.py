"""When a bot instance counts as alive: the one rule behind the single-instance guard, the
lease assignment of multi-instance mode and the dashboard.

An instance is alive until it stops cleanly or its heartbeat goes stale. In multi-instance mode
a heartbeat is stale after one lease TTL: by then the instance's leases have expired, it can
no longer trade, and its symbols go to the others. A single-instance bot (the no-op lock) has
no lease to lose; it counts as alive for `SINGLE_INSTANCE_STALE_AFTER` (six heartbeats), so a
database hiccup of a few heartbeats never lets a second bot start beside it.
"""
from __future__ import annotations

from datetime import datetime, timedelta

from django.conf import settings
from django.db.models import Q, QuerySet
from django.utils import timezone

import notifications
from trading.models import BotInstance

SINGLE_INSTANCE_STALE_AFTER = timedelta(seconds=30)
MULTI_INSTANCE = "redis"  # the lock backend of multi-instance mode


def stale_after(lock_backend: str, *, lease_ttl_ms: int | None = None) -> timedelta:
    """How long after its last heartbeat an instance of `lock_backend` is taken for dead."""
    if lock_backend == MULTI_INSTANCE:
        return timedelta(milliseconds=settings.QM_LEASE_TTL_MS if lease_ttl_ms is None else lease_ttl_ms)
    return SINGLE_INSTANCE_STALE_AFTER


def is_alive(instance: BotInstance, *, now: datetime | None = None) -> bool:
    now = now or timezone.now()
    return instance.stopped_at is None and now - instance.last_heartbeat <= stale_after(instance.lock_backend)


def alive_instances(*, now: datetime | None = None, lease_ttl_ms: int | None = None) -> QuerySet[BotInstance]:
    """The instances alive at `now`, each by the rule of its mode."""
    now = now or timezone.now()
    multi = Q(lock_backend=MULTI_INSTANCE,
              last_heartbeat__gte=now - stale_after(MULTI_INSTANCE, lease_ttl_ms=lease_ttl_ms))
    single = ~Q(lock_backend=MULTI_INSTANCE) & Q(last_heartbeat__gte=now - SINGLE_INSTANCE_STALE_AFTER)
    return BotInstance.objects.filter(multi | single, stopped_at__isnull=True)


SILENT_LOOKBACK = timedelta(days=1)  # an instance silent for longer than this is old news


def silent_instances(*, now: datetime | None = None) -> list[BotInstance]:
    """Instances that neither stopped cleanly nor sent a heartbeat in time, silent for at most
    `SILENT_LOOKBACK`."""
    now = now or timezone.now()
    recent = BotInstance.objects.filter(stopped_at__isnull=True, last_heartbeat__gte=now - SILENT_LOOKBACK)
    alive = set(alive_instances(now=now).values_list("pk", flat=True))
    return [i for i in recent if i.pk not in alive]


def report_silent(observer: str, *, now: datetime | None = None) -> int:
    """Tell the operator of each silent instance, once per silence (the key is the instance and
    its last heartbeat, so whichever instance or cron run sees it first sends it)."""
    now = now or timezone.now()
    instances = silent_instances(now=now)
    for instance in instances:
        if instance.instance_id == observer:
            continue
        quiet = (now - instance.last_heartbeat).total_seconds()
        fate = ("its leases expire and the other instances take its symbols over" if instance.lock_backend == MULTI_INSTANCE
                else "its symbols are not being traded")
        notifications.notify(
            "instance_silent",
            f"instance {instance.instance_id} (pid {instance.pid} on {instance.host}) has sent no heartbeat for "
            f"{quiet:.0f}s (since {instance.last_heartbeat:%Y-%m-%d %H:%M:%S} UTC): it crashed or hangs; {fate}",
            subject=instance.instance_id, key=f"silent:{instance.instance_id}:{instance.last_heartbeat.isoformat()}"[:150],
        )
    return len(instances)

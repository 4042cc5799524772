"""One rule for "alive": a multi-instance bot is dead one lease TTL after its last heartbeat (its
leases have expired), a single-instance bot after 30 s; a cleanly stopped one at once."""
from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from trading import liveness
from trading.models import BotInstance

pytestmark = pytest.mark.django_db


def instance(name, backend, age_s, *, stopped=False):
    now = timezone.now()
    return BotInstance.objects.create(instance_id=name, host="h", pid=1, version="t", lock_backend=backend,
                                      last_heartbeat=now - timedelta(seconds=age_s),
                                      stopped_at=now if stopped else None)


def test_each_mode_by_its_rule(settings):
    settings.QM_LEASE_TTL_MS = 10_000
    rows = [instance("multi-fresh", "redis", 9), instance("multi-stale", "redis", 11),
            instance("single-fresh", "nop", 29), instance("single-stale", "nop", 31),
            instance("stopped", "nop", 1, stopped=True)]
    now = timezone.now()
    alive = set(liveness.alive_instances(now=now).values_list("instance_id", flat=True))
    assert alive == {"multi-fresh", "single-fresh"}
    assert {row.instance_id for row in rows if liveness.is_alive(row, now=now)} == alive

"""Celery tasks: reconcile each symbol on its own `reconcile_interval`.

Beat runs `reconcile_due` every few seconds; it enqueues one `reconcile_symbol` per symbol
whose last pass is older than the symbol's interval, so symbols added or edited in the admin
are picked up without restarting beat. The blocking reconcile lock makes a task that overlaps
with the bot's own loop or a cron run wait its turn.
"""
from __future__ import annotations

from celery import shared_task
from django.conf import settings
from django.db.models import Max
from django.utils import timezone

from reconciliation.models import ReconcileRun
from trading.models import Symbol

DUE_CHECK_SECONDS = 10.0


@shared_task(name="reconciliation.reconcile_symbol", acks_late=True, ignore_result=True)
def reconcile_symbol(symbol_id: int) -> dict:
    from reconciliation.services import reconcile_symbols

    symbol = Symbol.objects.select_related("account").get(pk=symbol_id)
    (outcome,) = reconcile_symbols([symbol], trigger=ReconcileRun.Trigger.CELERY,
                                   instance_id=f"celery:{settings.QM_INSTANCE_ID}")
    return {"symbol": outcome.symbol, "status": outcome.status, "unresolved": outcome.unresolved}


def due_symbols(now=None) -> list[int]:
    """Symbols (not stopped) whose last reconcile started more than `reconcile_interval` ago."""
    now = now or timezone.now()
    last = dict(ReconcileRun.objects.values("symbol_id").annotate(at=Max("started_at")).values_list("symbol_id", "at"))
    due = []
    for symbol_id, interval in Symbol.objects.exclude(status=Symbol.Status.STOPPED).values_list("id", "reconcile_interval"):
        at = last.get(symbol_id)
        if at is None or (now - at).total_seconds() >= interval:
            due.append(symbol_id)
    return due


@shared_task(name="reconciliation.reconcile_due", ignore_result=True)
def reconcile_due() -> list[int]:
    due = due_symbols()
    for symbol_id in due:
        reconcile_symbol.delay(symbol_id)
    return due


BEAT_SCHEDULE = {
    "reconcile-due": {"task": "reconciliation.reconcile_due", "schedule": DUE_CHECK_SECONDS},
}

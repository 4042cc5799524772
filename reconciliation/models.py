"""Reconcile history: one `ReconcileRun` per pass over a symbol, with its `Discrepancy` rows."""
from __future__ import annotations

from django.db import models
from django.utils import timezone


class ReconcileRun(models.Model):
    class Trigger(models.TextChoices):
        LOOP = "loop", "bot loop"
        CRON = "cron", "cron (manage.py reconcile)"
        CELERY = "celery", "celery beat"
        ADMIN = "admin", "admin action"

    class Status(models.TextChoices):
        RUNNING = "running", "running"
        CLEAN = "clean", "clean"
        REPAIRED = "repaired", "repaired"
        ATTENTION = "attention", "needs attention"
        FAILED = "failed", "failed"

    symbol = models.ForeignKey("trading.Symbol", on_delete=models.CASCADE, related_name="reconcile_runs")
    instance_id = models.CharField(max_length=64)
    trigger = models.CharField(max_length=8, choices=Trigger.choices)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.RUNNING, db_index=True)
    lock_token = models.BigIntegerField(default=0)
    started_at = models.DateTimeField(default=timezone.now, db_index=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    orders_checked = models.PositiveIntegerField(default=0)
    trades_checked = models.PositiveIntegerField(default=0)
    discrepancies = models.PositiveIntegerField(default=0)
    repaired = models.PositiveIntegerField(default=0)
    unresolved = models.PositiveIntegerField(default=0)
    error = models.CharField(max_length=300, blank=True)

    class Meta:
        ordering = ["-started_at", "-id"]

    def __str__(self) -> str:
        return f"{self.symbol} {self.started_at:%Y-%m-%d %H:%M:%S} {self.status}"

    @property
    def duration(self):
        return (self.finished_at - self.started_at) if self.finished_at else None


class Discrepancy(models.Model):
    class Kind(models.TextChoices):
        MISSED_FILL = "missed_fill", "fill missing from the ledger"
        FINAL_STATE = "final_state", "order ended at the exchange, live in the ledger"
        UNACKNOWLEDGED = "unacknowledged", "accepted by the exchange, pending in the ledger"
        NEVER_PLACED = "never_placed", "intent never reached the exchange"
        UNKNOWN_ORDER = "unknown_order", "live in the ledger, unknown to the exchange"
        ORPHAN = "orphan", "our order at the exchange without a ledger row"
        FOREIGN = "foreign", "foreign order (not placed by QuantMesh)"
        REOPENED = "reopened", "open at the exchange, final in the ledger"
        BALANCE_DRIFT = "balance_drift", "holdings differ from the exchange balance"
        POSITION_DRIFT = "position_drift", "slot holdings differ from the exchange's futures position"

    class Action(models.TextChoices):
        REPAIRED = "repaired", "repaired"
        ADOPTED = "adopted", "adopted"
        REPORTED = "reported", "reported (needs a person)"
        PAUSED = "paused", "reported and symbol paused"
        NONE = "none", "none (dry run)"

    run = models.ForeignKey(ReconcileRun, on_delete=models.CASCADE, related_name="items")
    kind = models.CharField(max_length=16, choices=Kind.choices, db_index=True)
    client_order_id = models.CharField(max_length=64, blank=True, db_index=True)
    exchange_order_id = models.CharField(max_length=64, blank=True)
    ledger_view = models.JSONField(default=dict, blank=True)
    exchange_view = models.JSONField(default=dict, blank=True)
    action = models.CharField(max_length=10, choices=Action.choices)
    note = models.CharField(max_length=300, blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-created_at", "-id"]
        verbose_name_plural = "discrepancies"

    def __str__(self) -> str:
        return f"{self.kind} {self.client_order_id or self.exchange_order_id}"

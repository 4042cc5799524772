"""Lock events shown in the admin ("lock conflicts")."""
from __future__ import annotations

from django.db import models
from django.utils import timezone


class LockEvent(models.Model):
    """Something noteworthy on a lock path: a conflict, a timeout, a backend error, a lost lock or
    a write refused by the fence. Repeats of the same event within a minute are folded into one
    row (`count`), and rows older than QM_LOCK_EVENT_RETENTION_DAYS are pruned."""

    class Kind(models.TextChoices):
        CONFLICT = "conflict", "conflict"
        TIMEOUT = "timeout", "timeout"
        BACKEND_ERROR = "backend_error", "backend error"
        LOST = "lost", "lost lock"
        FENCED = "fenced", "fenced write"

    kind = models.CharField(max_length=16, choices=Kind.choices, db_index=True)
    key = models.CharField(max_length=200, help_text="The full lock key.")
    label = models.CharField(max_length=120, db_index=True, help_text="Lock family and symbol (the metric label).")
    instance_id = models.CharField(max_length=64, db_index=True)
    token = models.BigIntegerField(null=True, blank=True)
    detail = models.CharField(max_length=300, blank=True)
    count = models.PositiveIntegerField(default=1)
    created_at = models.DateTimeField(default=timezone.now, db_index=True)
    last_seen_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-last_seen_at", "-id"]
        verbose_name = "lock conflict"
        verbose_name_plural = "lock conflicts"

    def __str__(self) -> str:
        return f"{self.kind} {self.key}"

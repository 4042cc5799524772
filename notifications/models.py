from __future__ import annotations

from django.db import models


class Notification(models.Model):
    """One message to the operator, as sent (or not) to the configured channels. Channels are
    named by their label only; no URL or secret is stored."""

    class Status(models.TextChoices):
        SENDING = "sending", "sending"
        DELIVERED = "delivered", "delivered"
        PARTIAL = "partial", "delivered to some channels"
        FAILED = "failed", "failed"

    created_at = models.DateTimeField(db_index=True, help_text="When the event happened.")
    sent_at = models.DateTimeField(null=True, blank=True)
    event = models.CharField(max_length=32, db_index=True)
    family = models.CharField(max_length=16)
    level = models.CharField(max_length=8)
    subject = models.CharField(max_length=128, blank=True, help_text="The symbol, account or instance it is about.")
    title = models.CharField(max_length=200)
    text = models.TextField()
    # Set for an event every instance may see (a silent peer, a daily summary): the first
    # instance to insert the key sends it, the others find it taken.
    key = models.CharField(max_length=150, null=True, blank=True, unique=True)
    instance_id = models.CharField(max_length=64, blank=True)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.SENDING)
    channels = models.JSONField(default=list, blank=True, help_text="Per channel label: delivered or why not.")
    attempts = models.PositiveSmallIntegerField(default=0)
    error = models.CharField(max_length=300, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["subject", "-created_at"], name="notification_subject_idx")]

    def __str__(self) -> str:
        return f"{self.event} {self.subject} ({self.status})"

"""`manage.py notify`: try the notification channels, or send the daily summary now."""
from __future__ import annotations

import dataclasses
from datetime import timedelta

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

from notifications.sender import Hub
from trading import summary
from trading.models import ExchangeAccount


class Command(BaseCommand):
    help = ("Send a test message to every channel of QM_NOTIFY_URLS and say, per channel, whether it was "
            "delivered (--test); or send each account's summary of the last 24 hours now (--summary).")

    def add_arguments(self, parser):
        what = parser.add_mutually_exclusive_group(required=True)
        what.add_argument("--test", action="store_true", help="send a test message (no retries) to every channel")
        what.add_argument("--summary", action="store_true", help="send the summary of the last 24 hours now")
        parser.add_argument("--account", help="--summary: only this account (by name)")
        parser.add_argument("--text", default="", help="--test: the message text")

    def handle(self, *args, **opts):
        config = settings.QM_NOTIFY_CONFIG
        if not config.enabled:
            raise CommandError("no channel: set QM_NOTIFY_URLS (or QM_NOTIFY_URLS_FILE) to one or more apprise URLs",
                               returncode=2)
        hub = Hub(dataclasses.replace(config, retries=0) if opts["test"] else config,
                  instance_id=settings.QM_INSTANCE_ID)
        if opts["test"]:
            text = opts["text"] or f"Test message from QuantMesh on {settings.QM_INSTANCE_ID} at {timezone.now():%H:%M:%S} UTC."
            self._report(hub.send_now("test", text, subject=settings.QM_INSTANCE_ID))
            return
        accounts = ExchangeAccount.objects.order_by("name")
        if opts["account"]:
            accounts = accounts.filter(name=opts["account"])
            if not accounts.exists():
                raise CommandError(f"--account: no account named {opts['account']!r}", returncode=2)
        end = timezone.now()
        for account in accounts:
            text = summary.account_summary(account, start=end - timedelta(days=1), end=end)
            self.stdout.write(text)
            self._report(hub.send_now("daily_summary", text, subject=f"account {account.name}"))

    def _report(self, deliveries) -> None:
        failed = 0
        for d in deliveries:
            if d.delivered:
                self.stdout.write(f"{d.channel}: delivered")
            else:
                failed += 1
                self.stdout.write(f"{d.channel}: NOT delivered: {d.error}")
        if failed:
            raise CommandError(f"{failed} of {len(deliveries)} channel(s) did not take the message", returncode=1)

"""`manage.py reconcile`: one reconcile pass, for cron.

Exit codes: 0 clean or repaired; 1 discrepancies left that need a person; 2 could not run
(lock busy past its timeout, exchange down, bad arguments), with a one-line reason on stderr.
"""
from __future__ import annotations

import json
import sys

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

import notifications
from reconciliation.loop import describe
from reconciliation.models import ReconcileRun
from reconciliation.services import ReconcileFailed, reconcile_symbols
from trading import liveness
from trading.models import Symbol


class Command(BaseCommand):
    help = "Compare the ledger with the exchange for one symbol (or all) and repair what is safe."

    def add_arguments(self, parser):
        which = parser.add_mutually_exclusive_group(required=True)
        which.add_argument("--symbol", help="e.g. BTC/USDT")
        which.add_argument("--all", action="store_true", help="every symbol that is not stopped")
        parser.add_argument("--account", help="only this exchange account")
        parser.add_argument("--dry-run", action="store_true", help="report only; change nothing")
        parser.add_argument("--json", action="store_true", help="print the outcome as JSON")
        parser.add_argument("--lock-timeout", type=float, default=30.0, help="seconds to wait for the reconcile lock")

    def handle(self, *args, **opts):
        try:
            self._reconcile(opts)
        finally:
            notifications.close(timeout=30)  # what this run has to tell goes out before it exits

    def _reconcile(self, opts):
        if notifications.enabled():
            liveness.report_silent(f"cron:{settings.QM_INSTANCE_ID}")  # a single-instance bot cannot report itself
        chosen = Symbol.objects.select_related("account")
        if opts["account"]:
            chosen = chosen.filter(account__name=opts["account"])
        if opts["symbol"]:
            chosen = chosen.filter(symbol=opts["symbol"].strip().upper())
            if not chosen.exists():
                raise CommandError(f"--symbol: no symbol {opts['symbol']!r} is configured", returncode=2)
        else:
            chosen = chosen.exclude(status=Symbol.Status.STOPPED)
        symbols = list(chosen)
        if not symbols:
            raise CommandError("no symbol to reconcile", returncode=2)
        try:
            outcomes = reconcile_symbols(
                symbols, trigger=ReconcileRun.Trigger.CRON, instance_id=f"cron:{settings.QM_INSTANCE_ID}",
                dry_run=opts["dry_run"], lock_timeout=opts["lock_timeout"],
            )
        except ReconcileFailed as exc:
            raise CommandError(str(exc), returncode=2) from None
        if opts["json"]:
            self.stdout.write(json.dumps([o.as_dict() for o in outcomes], indent=2, default=str))
        else:
            for outcome in outcomes:
                self.stdout.write(f"{outcome.symbol}{' (dry run)' if opts['dry_run'] else ''}: {describe(outcome)}")
                for f in outcome.findings:
                    self.stdout.write(f"  {f.kind:<14} {f.action:<9} {f.client_order_id or '-'} {f.note}")
        if any(o.status == ReconcileRun.Status.FAILED for o in outcomes):
            failed = next(o for o in outcomes if o.status == ReconcileRun.Status.FAILED)
            self.stderr.write(f"{failed.symbol}: {failed.error}")
            sys.exit(2)
        if any(o.unresolved for o in outcomes):
            sys.exit(1)

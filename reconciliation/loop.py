"""The bot's own reconcile timer: `runbot` reconciles each of its symbols every
`reconcile_interval`, in the symbol's thread, between two ticks.

The interval counts from the symbol's last pass by any trigger (loop, cron, Celery, admin), so a
pass made elsewhere postpones the loop's next one instead of doubling it. The loop never waits for
the reconcile lock: when another pass holds it, that pass is doing the work and the loop looks
again one interval later. So a tick is delayed by at most one pass of its own symbol. The pass
uses the engine's gateway (its request budget) and the engine's writer, so a pass by an instance
whose lease is gone is fenced like its orders.
"""
from __future__ import annotations

import logging
import time
from typing import Callable

from django.db.models import Max
from django.utils import timezone

from locking.base import LockService
from reconciliation.models import ReconcileRun
from reconciliation.services import Outcome, ReconcileFailed, Reconciler
from trading import services
from trading.exchange.gateway import ExchangeGateway
from trading.models import Symbol

log = logging.getLogger("quantmesh.reconcile")


class LoopReconciler:
    """Runs a reconcile pass of one symbol when its `reconcile_interval` has passed."""

    def __init__(self, symbol: Symbol, gateway: ExchangeGateway, locks: LockService, *, instance_id: str,
                 writer: services.Writer, monotonic: Callable[[], float] = time.monotonic):
        self.symbol = symbol
        self.gateway = gateway
        self.locks = locks
        self.instance_id = instance_id
        self.writer = writer
        self.monotonic = monotonic
        self.next_check = 0.0  # monotonic time of the next look at the last pass
        self.last: Outcome | None = None
        self.last_at: float | None = None  # monotonic time the last pass of this loop ended
        self.skipped = ""  # why the last due pass did not run, until one runs

    def run_if_due(self, *, now_wanted: bool = False) -> Outcome | None:
        """One pass when due, or at once with `now_wanted` (the outcome), else None. Never raises
        what a pass can raise."""
        now = self.monotonic()
        if now < self.next_check and not now_wanted:
            return None
        interval = self.symbol.reconcile_interval
        latest = ReconcileRun.objects.filter(symbol_id=self.symbol.pk).aggregate(at=Max("started_at"))["at"]
        if latest is not None and not now_wanted:
            age = (timezone.now() - latest).total_seconds()
            if age < interval:
                self.next_check = now + interval - age
                return None
        self.next_check = now + interval
        reconciler = Reconciler(self.symbol, self.gateway, self.locks, instance_id=self.instance_id,
                                trigger=ReconcileRun.Trigger.LOOP, lock_timeout=0, writer=self.writer)
        try:
            outcome = reconciler.run()
        except ReconcileFailed as exc:
            self.skipped = str(exc)
            log.info("%s: loop reconcile skipped, another pass holds the lock or it is unavailable (%s)",
                     self.symbol.symbol, exc)
            return None
        self.last, self.last_at, self.skipped = outcome, self.monotonic(), ""
        if outcome.status == ReconcileRun.Status.CLEAN:
            log.info("%s reconcile: %s", self.symbol.symbol, describe(outcome))
        else:
            found = ", ".join(f"{f.kind} {f.action} {f.client_order_id or ''}".rstrip() for f in outcome.findings)
            log.warning("%s reconcile: %s%s", self.symbol.symbol, describe(outcome), f" ({found})" if found else "")
        return outcome

    def summary(self) -> str:
        """For the status line: the last pass's result and how long ago it ended."""
        if self.last is None:
            return f"reconcile: skipped ({self.skipped})" if self.skipped else "reconcile: not yet"
        ago = self.monotonic() - (self.last_at or 0.0)
        text = f"reconcile: {self.last.status} {ago:.0f}s ago"
        if self.last.unresolved:
            text += f", {self.last.unresolved} need a person"
        return text


def describe(outcome: Outcome) -> str:
    """One line: status, what was checked, how much was found."""
    text = (f"{outcome.status}; {outcome.orders_checked} orders and {outcome.trades_checked} trades checked; "
            f"{len(outcome.findings)} discrepancies, {outcome.unresolved} need a person")
    if outcome.error:
        text += f"; error: {outcome.error}"
    return text

"""One reconcile pass over one symbol: compare the ledger with the exchange, repair what is safe,
record everything.

Under the symbol's reconcile lock (blocking, 30 s), so the bot's loop, cron and Celery can all
run it at the same time: one pass runs at a time, and every repair goes through the same
services and fence as the bot, so applying a fill twice is impossible.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import cast

from django.db import transaction
from django.utils import timezone

import notifications
from locking.base import LockService
from reconciliation import metrics
from reconciliation.models import Discrepancy, ReconcileRun
from trading import services
from trading.exchange.gateway import ExchangeGateway
from trading.exchange.types import ExchangeOrder, Trade
from trading.lockkeys import RECONCILE_LOCK_TTL, reconcile_lock_key
from trading.models import LIVE_STATUSES, GridSlot, Order, Symbol
from trading.sync import Change, LedgerSync

log = logging.getLogger("quantmesh.reconcile")

TRADE_LOOKBACK = timedelta(hours=24)
HOLDINGS_READS = 3  # tries at a read of the exchange's holdings with no trade landing around it


class ReconcileFailed(Exception):
    """The pass could not run (lock busy past its timeout, exchange down, ...)."""


@dataclass
class Finding:
    kind: str
    action: str
    client_order_id: str = ""
    exchange_order_id: str = ""
    ledger_view: dict = field(default_factory=dict)
    exchange_view: dict = field(default_factory=dict)
    note: str = ""


@dataclass
class Outcome:
    symbol: str
    status: str
    findings: list[Finding]
    orders_checked: int = 0
    trades_checked: int = 0
    run_id: int | None = None
    error: str = ""

    @property
    def unresolved(self) -> int:
        return sum(1 for f in self.findings if f.action in (Discrepancy.Action.REPORTED, Discrepancy.Action.PAUSED))

    def as_dict(self) -> dict:
        return {
            "symbol": self.symbol, "status": self.status, "run_id": self.run_id, "orders_checked": self.orders_checked,
            "trades_checked": self.trades_checked, "discrepancies": len(self.findings), "unresolved": self.unresolved,
            "error": self.error,
            "findings": [f.__dict__ for f in self.findings],
        }


def _order_view(order: Order | None) -> dict:
    if order is None:
        return {}
    return {"status": order.status, "side": order.side, "level": order.level, "price": str(order.price),
            "amount": str(order.amount), "filled": str(order.filled_amount)}


def _remote_view(remote) -> dict:
    if isinstance(remote, ExchangeOrder):
        return {"status": remote.status, "side": remote.side, "price": str(remote.price), "amount": str(remote.amount),
                "filled": str(remote.filled), "client_order_id": remote.client_order_id}
    if isinstance(remote, Trade):
        return {"trade_id": remote.trade_id, "side": remote.side, "price": str(remote.price), "amount": str(remote.amount),
                "fee": str(remote.fee), "fee_currency": remote.fee_currency}
    return {}


def _finding(change: Change) -> Finding:
    remote = change.remote
    return Finding(
        kind=change.kind, action=change.action,
        client_order_id=change.order.client_order_id if change.order else getattr(remote, "client_order_id", ""),
        exchange_order_id=(change.order.exchange_order_id if change.order and change.order.exchange_order_id
                           else getattr(remote, "exchange_order_id", "")) or "",
        ledger_view=_order_view(change.order), exchange_view=_remote_view(remote), note=change.note,
    )


class Reconciler:
    def __init__(self, symbol: Symbol, gateway: ExchangeGateway, locks: LockService, *, instance_id: str, trigger: str,
                 dry_run: bool = False, lock_timeout: float = RECONCILE_LOCK_TTL, writer: services.Writer | None = None):
        self.symbol = symbol
        self.writer = writer  # the bot loop's (its lease token); otherwise the symbol's current fence
        self.gateway = gateway
        self.locks = locks
        self.instance_id = instance_id
        self.trigger = trigger
        self.dry_run = dry_run
        self.lock_timeout = lock_timeout

    def run(self) -> Outcome:
        key = reconcile_lock_key(self.gateway.exchange.id, self.symbol.symbol)
        try:
            grant = self.locks.lock(key, RECONCILE_LOCK_TTL, self.lock_timeout, floor=self.symbol.reconcile_token)
        except Exception as exc:  # busy past the timeout, or the backend is down: fail closed
            metrics.record_run(self.symbol.symbol, "failed")
            raise ReconcileFailed(f"reconcile lock {key}: {exc}") from exc
        try:
            return self._run_locked(grant.token)
        finally:
            try:
                self.locks.unlock(grant)
            except Exception as exc:
                log.warning("%s reconcile lock release: %s", self.symbol.symbol, exc)

    def _run_locked(self, token: int) -> Outcome:
        self.symbol.refresh_from_db()
        run = None
        if not self.dry_run:
            run = ReconcileRun.objects.create(symbol=self.symbol, instance_id=self.instance_id, trigger=self.trigger,
                                              lock_token=token)
        writer = self.writer or services.Writer(self.instance_id, self.symbol.fence_token)
        sync = LedgerSync(self.symbol, self.gateway, writer, dry_run=self.dry_run)
        outcome = Outcome(symbol=self.symbol.symbol, status=ReconcileRun.Status.RUNNING, findings=[])
        try:
            remote_open = self.gateway.fetch_open_orders(self.symbol.symbol)
            outcome.orders_checked = len(remote_open) + Order.objects.filter(symbol=self.symbol, status__in=LIVE_STATUSES).count()
            outcome.findings += self._check_open_orders(sync, remote_open)
            trades = self._recent_trades()
            outcome.trades_checked = len(trades)
            trade_changes = sync.apply_trades(trades)
            outcome.findings += [_finding(c) for c in trade_changes]
            changes: list = []
            sync.sync_orders(remote_open, changes=changes)
            outcome.findings += [_finding(c) for c in changes]
            # Every change apply_trades returns carries the trade it is about.
            unapplied = [cast(Trade, c.remote) for c in trade_changes if self.dry_run]
            outcome.findings += self._check_balance(unapplied, sync)
            if self.symbol.account.is_futures and not self.dry_run:
                self._futures_books()
        except Exception as exc:
            outcome.status = ReconcileRun.Status.FAILED
            outcome.error = f"{type(exc).__name__}: {exc}"[:300]
            log.error("%s reconcile failed: %s", self.symbol.symbol, outcome.error)
        else:
            if not outcome.findings:
                outcome.status = ReconcileRun.Status.CLEAN
            elif outcome.unresolved:
                outcome.status = ReconcileRun.Status.ATTENTION
            else:
                outcome.status = ReconcileRun.Status.REPAIRED
        if run is not None:
            self._save(run, outcome, token)
        metrics.record_outcome(outcome)
        if outcome.status == ReconcileRun.Status.ATTENTION and not self.dry_run:
            self._tell_operator(outcome)
        return outcome

    def _tell_operator(self, outcome: Outcome) -> None:
        open_items = [f for f in outcome.findings if f.action in (Discrepancy.Action.REPORTED, Discrepancy.Action.PAUSED)]
        lines = [f"- {f.kind} {f.action} {f.client_order_id or f.exchange_order_id or ''} {f.note}".rstrip()
                 for f in open_items[:10]]
        more = f"\n(and {len(open_items) - 10} more)" if len(open_items) > 10 else ""
        notifications.notify(
            "reconcile_attention",
            f"{self.symbol}: reconcile ({self.trigger}) found {len(outcome.findings)} discrepancies, "
            f"{outcome.unresolved} need a person (run {outcome.run_id or '-'}):\n" + "\n".join(lines) + more,
            subject=str(self.symbol), key=f"reconcile:{outcome.run_id}" if outcome.run_id else None,
        )

    # --- checks --------------------------------------------------------------------------------
    def _check_open_orders(self, sync: LedgerSync, remote_open: list[ExchangeOrder]) -> list[Finding]:
        findings = []
        known = {o.client_order_id: o for o in Order.objects.filter(symbol=self.symbol,
                                                                       client_order_id__in=[r.client_order_id for r in remote_open])}
        prefix = f"{self.symbol.account.client_id_prefix}-"
        for remote in remote_open:
            order = known.get(remote.client_order_id)
            if order is not None:
                if not order.is_live:
                    findings.append(Finding(Discrepancy.Kind.REOPENED, Discrepancy.Action.REPORTED, order.client_order_id,
                                            remote.exchange_order_id, _order_view(order), _remote_view(remote),
                                            "final in the ledger but open at the exchange"))
                continue
            if not remote.client_order_id.startswith(prefix):
                findings.append(Finding(Discrepancy.Kind.FOREIGN, Discrepancy.Action.REPORTED, remote.client_order_id,
                                        remote.exchange_order_id, {}, _remote_view(remote), "left untouched"))
                continue
            adopted = sync.adopt(remote)
            if adopted is not None:
                findings.append(Finding(Discrepancy.Kind.ORPHAN, Discrepancy.Action.ADOPTED, remote.client_order_id,
                                        remote.exchange_order_id, _order_view(adopted), _remote_view(remote)))
            else:
                action = Discrepancy.Action.NONE if self.dry_run else Discrepancy.Action.REPORTED
                findings.append(Finding(Discrepancy.Kind.ORPHAN, action, remote.client_order_id,
                                        remote.exchange_order_id, {}, _remote_view(remote),
                                        "our prefix but no slot of this symbol" if not self.dry_run else "would adopt"))
        return findings

    def _recent_trades(self) -> list[Trade]:
        """Trades since the older of the oldest live order and the newest recorded fill (a minute
        of slack), or the last day when the ledger has neither."""
        marks = []
        oldest_live = Order.objects.filter(symbol=self.symbol, status__in=LIVE_STATUSES).order_by("created_at").first()
        if oldest_live is not None:
            marks.append(oldest_live.created_at)
        latest_fill = self.symbol.fills.order_by("-traded_at").first()
        if latest_fill is not None:
            marks.append(latest_fill.traded_at)
        since = min(marks) - timedelta(minutes=1) if marks else timezone.now() - TRADE_LOOKBACK
        trades: list[Trade] = []
        since_ms = int(since.timestamp() * 1000)
        while True:
            batch = self.gateway.fetch_my_trades(self.symbol.symbol, since_ms=since_ms, limit=1000)
            trades += batch
            if len(batch) < 1000:
                return trades
            since_ms = max(t.timestamp_ms for t in batch)

    def _check_balance(self, unapplied: list[Trade], sync: LedgerSync | None = None) -> list[Finding]:
        """What the ledger's slots hold (plus, in a dry run, the trades it would apply) vs the
        exchange: the base balance on spot, the position on futures. The first pass records what
        the account held beyond the grid as the symbol's offset. A fill landing between the trades
        request and the balance request would show as drift (or, on the first pass, be taken into
        the offset for good), so the offset and any drift worth a grid order come from a settled
        read (`_settled_holdings`)."""
        futures = self.symbol.account.is_futures
        offset_field, what = ("position_offset", "position") if futures else ("base_offset", "balance")
        base = self.symbol.symbol.split("/")[0]
        offset = getattr(self.symbol, offset_field)
        if offset is None and sync is not None and not self.dry_run:
            ledger_holding, exchange_total, price = self._settled_holdings(base, unapplied, sync)
        else:
            ledger_holding, exchange_total, price = self._holdings(base, unapplied)
        if offset is None:
            # First pass: whatever the account held beyond the grid's slots is not the grid's.
            if not self.dry_run:
                Symbol.objects.filter(pk=self.symbol.pk, **{f"{offset_field}__isnull": True}).update(
                    **{offset_field: exchange_total - ledger_holding})
            return []
        step = self.symbol.step_size or Decimal(0)
        drift = exchange_total - ledger_holding - offset
        if abs(drift) <= step:
            return []
        price = price or self.gateway.fetch_ticker(self.symbol.symbol).last
        if abs(drift) * price >= self.symbol.order_quantity and sync is not None and not self.dry_run:
            ledger_holding, exchange_total, _ = self._settled_holdings(base, unapplied, sync)
            drift = exchange_total - ledger_holding - offset
            if abs(drift) <= step:
                return []
        expected = ledger_holding + offset
        view = {"ledger_holding": str(ledger_holding), "offset": str(offset), "expected": str(expected)}
        exchange_view = {what: str(exchange_total), "drift": str(drift), "drift_value": str(drift * price)}
        kind = Discrepancy.Kind.POSITION_DRIFT if futures else Discrepancy.Kind.BALANCE_DRIFT
        if abs(drift) * price >= self.symbol.order_quantity:
            action = Discrepancy.Action.NONE if self.dry_run else Discrepancy.Action.PAUSED
            if not self.dry_run:
                services.symbol_pause(self.symbol, reason=f"reconcile: {base} {what} drift {drift} (worth {drift * price:.2f})")
            note = "drift worth more than one grid order: symbol paused"
        else:
            action = Discrepancy.Action.NONE if self.dry_run else Discrepancy.Action.REPORTED
            note = "drift below one grid order"
        return [Finding(kind, action, ledger_view=view, exchange_view=exchange_view, note=note)]

    def _settled_holdings(self, base: str, unapplied: list[Trade],
                          sync: LedgerSync) -> tuple[Decimal, Decimal, Decimal | None]:
        """`_holdings` read between two trade syncs, repeated until no trade lands around the read
        (at most HOLDINGS_READS tries): a fill just before or after it would show as drift."""
        for _ in range(HOLDINGS_READS):
            sync.apply_trades(self._recent_trades())
            fills = self.symbol.fills.count()
            held = self._holdings(base, unapplied)
            sync.apply_trades(self._recent_trades())
            if self.symbol.fills.count() == fills:
                break
        return held

    def _holdings(self, base: str, unapplied: list[Trade]) -> tuple[Decimal, Decimal, Decimal | None]:
        """(the base the ledger's slots hold, plus unapplied trades; the exchange's base balance,
        or on futures its signed position; the mark price when the exchange gave one)."""
        price = None
        if self.symbol.account.is_futures:
            position = self.gateway.fetch_position(self.symbol.symbol)
            exchange_total, price = position.qty, position.mark_price or None
        else:
            balances = self.gateway.fetch_balances()
            exchange_total = balances[base].total if base in balances else Decimal(0)
        ledger_holding = sum((h for h in GridSlot.objects.filter(symbol=self.symbol).values_list("holding", flat=True)), Decimal(0))
        for trade in unapplied:
            received = trade.amount - (trade.fee if trade.fee_currency == base else 0)
            ledger_holding += received if trade.side == "buy" else -trade.amount
        return ledger_holding, exchange_total, price

    def _futures_books(self) -> None:
        """Futures: store the funding payments booked since the last one stored (once each, by
        transaction id) and a snapshot of the position and its margin."""
        latest = self.symbol.funding_payments.order_by("-funded_at").first()
        since = latest.funded_at if latest is not None else self.symbol.created_at
        events = self.gateway.fetch_funding_payments(self.symbol.symbol, since_ms=int(since.timestamp() * 1000))
        stored = 0
        for event in events:
            when = datetime.fromtimestamp(event.timestamp_ms / 1000, tz=UTC)
            stored += services.funding_record(symbol=self.symbol, tran_id=event.tran_id, amount=event.amount,
                                              asset=event.asset, funded_at=when) is not None
        if stored:
            log.info("%s: %d funding payment(s) stored", self.symbol.symbol, stored)
        position = self.gateway.fetch_position(self.symbol.symbol)
        services.position_snapshot_record(self.symbol, position, self.gateway.fetch_futures_account())

    # --- recording -----------------------------------------------------------------------------
    @transaction.atomic
    def _save(self, run: ReconcileRun, outcome: Outcome, token: int) -> None:
        # A paused reconciler whose lock expired must not overwrite a newer pass's conclusions.
        fresh = Symbol.objects.filter(pk=self.symbol.pk, reconcile_token__lte=token).update(reconcile_token=token)
        if not fresh:
            outcome.status = ReconcileRun.Status.FAILED
            outcome.error = f"fenced: reconcile token {token} is older than a later pass"
        Discrepancy.objects.bulk_create([
            Discrepancy(run=run, kind=f.kind, client_order_id=f.client_order_id[:64],
                        exchange_order_id=(f.exchange_order_id or "")[:64], ledger_view=f.ledger_view,
                        exchange_view=f.exchange_view, action=f.action, note=f.note[:300])
            for f in outcome.findings
        ])
        ReconcileRun.objects.filter(pk=run.pk).update(
            status=outcome.status, finished_at=timezone.now(), orders_checked=outcome.orders_checked,
            trades_checked=outcome.trades_checked, discrepancies=len(outcome.findings),
            repaired=len(outcome.findings) - outcome.unresolved, unresolved=outcome.unresolved, error=outcome.error,
        )
        outcome.run_id = run.pk


def reconcile_symbols(symbols: list[Symbol], *, trigger: str, instance_id: str, dry_run: bool = False,
                      lock_timeout: float = RECONCILE_LOCK_TTL, locks: LockService | None = None) -> list[Outcome]:
    """Reconcile each symbol with a gateway of its account. Raises ReconcileFailed when a pass
    cannot run at all (lock, exchange set-up)."""
    from django.conf import settings

    from locking.setup import lock_service_from_settings
    from trading.exchange.errors import ExchangeFailure
    from trading.exchange.session import session_for

    own_locks = locks is None
    try:
        locks = locks or lock_service_from_settings(instance_id=instance_id)
    except Exception as exc:
        raise ReconcileFailed(f"lock backend: {exc}") from exc
    outcomes = []
    try:
        for symbol in symbols:
            try:
                gateway = session_for(symbol.account, paper_url=settings.QM_PAPER_EXCHANGE_URL or None).gateway()
            except ExchangeFailure as exc:
                raise ReconcileFailed(f"{symbol.symbol}: {exc}") from exc
            outcomes.append(Reconciler(symbol, gateway, locks, instance_id=instance_id, trigger=trigger,
                                       dry_run=dry_run, lock_timeout=lock_timeout).run())
    finally:
        if own_locks:
            locks.close()
    return outcomes

"""Bringing the ledger in line with the exchange: trades to fills, order states, orphans.

Shared by the trading loop (`trading.engine`) and the reconciler (`reconciliation`), so both
repair the same way, through the same services and the same fence. Each step returns what it
found, so the reconciler can report it.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from datetime import timezone as dt_timezone

from django.conf import settings
from django.db import IntegrityError
from django.utils import timezone

from trading import services
from trading.exchange import errors as xerr
from trading.exchange.gateway import ExchangeGateway
from trading.exchange.types import ExchangeOrder, Trade
from trading.models import LIVE_STATUSES, Order, OrderStatus, Symbol

log = logging.getLogger("quantmesh.sync")



def ms_to_datetime(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, tz=dt_timezone.utc)


@dataclass(frozen=True)
class Change:
    """One thing sync found (and, unless it says otherwise, repaired)."""

    kind: str  # a reconciliation.models.Discrepancy.Kind value
    order: Order | None
    remote: ExchangeOrder | Trade | None
    action: str  # repaired / adopted / reported
    note: str = ""


class LedgerSync:
    """Applies what the exchange says to one symbol's ledger."""

    def __init__(self, symbol: Symbol, gateway: ExchangeGateway, writer: services.Writer, *, dry_run: bool = False):
        self.symbol = symbol
        self.gateway = gateway
        self.writer = writer
        self.dry_run = dry_run

    def not_found_is_final_after(self) -> timedelta:
        """After an ambiguous create, "not found" means "never placed" only once the signed
        request can no longer execute: its timestamp plus the exchange's receive window plus a
        margin for clock offset."""
        return timedelta(milliseconds=self.gateway.recv_window_ms + settings.QM_CLOCK_MARGIN_MS)

    # --- trades ----------------------------------------------------------------------------------
    def apply_trades(self, trades: list[Trade]) -> list[Change]:
        """Record every trade not yet in the ledger, in exchange order."""
        changes: list[Change] = []
        if not trades:
            return changes
        seen = set(
            self.symbol.fills.filter(exchange_trade_id__in=[t.trade_id for t in trades]).values_list(
                "exchange_trade_id", flat=True
            )
        )
        new = [t for t in trades if t.trade_id not in seen]
        # Orders the ledger knows by exchange id need no lookup here (fill_record reads them).
        known = set(
            Order.objects.filter(symbol=self.symbol, exchange_order_id__in={t.exchange_order_id for t in new})
            .values_list("exchange_order_id", flat=True)
        ) if new and not self.dry_run else set()
        for trade in sorted(new, key=lambda t: (t.timestamp_ms, t.trade_id)):
            if trade.exchange_order_id not in known:
                order = self.order_for_trade(trade)
                if self.dry_run:
                    changes.append(Change("missed_fill", order, trade, "none"))
                    continue
            outcome = services.fill_record(
                symbol=self.symbol, writer=self.writer, trade_id=trade.trade_id,
                exchange_order_id=trade.exchange_order_id, side=trade.side, price=trade.price, amount=trade.amount,
                fee=trade.fee, fee_currency=trade.fee_currency, is_maker=trade.is_maker,
                traded_at=ms_to_datetime(trade.timestamp_ms), realized_pnl=trade.realized_pnl,
            )
            if outcome is None:
                continue
            cid = outcome.order.client_order_id if outcome.order else "-"
            log.info("%s fill %s %s %s @ %s order=%s", self.symbol.symbol, trade.trade_id, trade.side, trade.amount,
                     trade.price, cid)
            changes.append(Change("missed_fill", outcome.order, trade, "repaired" if outcome.order else "reported",
                                  "" if outcome.order else "trade of an order with no ledger row"))
        return changes

    def order_for_trade(self, trade: Trade) -> Order | None:
        """The ledger order a trade belongs to. A trade can arrive before the ledger has learned
        its order's exchange id (a lost reply); then the exchange is asked for the order's client
        id, and the ledger row (or an adopted orphan) gets the exchange id."""
        order = Order.objects.filter(symbol=self.symbol, exchange_order_id=trade.exchange_order_id).first()
        if order is not None:
            return order
        try:
            remote = self.gateway.fetch_order(self.symbol.symbol, trade.exchange_order_id)
        except (xerr.OrderNotFound, xerr.Ambiguous) as exc:
            log.warning("%s trade %s: order %s not found (%s)", self.symbol.symbol, trade.trade_id,
                        trade.exchange_order_id, exc)
            return None
        order = Order.objects.filter(client_order_id=remote.client_order_id, symbol=self.symbol).first()
        if order is None:
            return self.adopt(remote)
        if not self.dry_run and order.status in LIVE_STATUSES:
            services.order_apply_exchange_state(order, remote, writer=self.writer, note="exchange id learned from a trade")
        elif not self.dry_run:
            Order.objects.filter(pk=order.pk, exchange_order_id__isnull=True).update(exchange_order_id=remote.exchange_order_id)
        order.refresh_from_db()
        return order

    # --- orders ----------------------------------------------------------------------------------
    def live_orders(self) -> list[Order]:
        return list(Order.objects.filter(symbol=self.symbol, status__in=LIVE_STATUSES).order_by())

    def sync_orders(self, remote_open: list[ExchangeOrder] | None = None, *, live: list[Order] | None = None,
                    changes: list[Change] | None = None) -> list[Order]:
        """Make every live ledger order agree with the exchange (`remote_open`: its open orders,
        fetched here when not given; `live`: the ledger's live orders, read here when not given).
        Returns the orders still live; what was found is appended to `changes`."""
        if live is None:
            live = self.live_orders()
        if not live:
            return []
        if remote_open is None:
            remote_open = self.gateway.fetch_open_orders(self.symbol.symbol)
        by_cid = {o.client_order_id: o for o in remote_open}
        if changes is None:
            changes = []
        for order in live:
            remote = by_cid.get(order.client_order_id)
            if remote is not None:
                unacknowledged = order.status in (OrderStatus.PENDING, OrderStatus.UNKNOWN)
                if not self.dry_run:
                    services.order_apply_exchange_state(order, remote, writer=self.writer)
                if unacknowledged:
                    changes.append(Change("unacknowledged", order, remote, "none" if self.dry_run else "repaired",
                                          "open at the exchange; the reply had not reached the ledger"))
                continue
            change = self.resolve(order)
            if change is not None:
                changes.append(change)
        return [order for order in live if order.is_live]

    def resolve(self, order: Order) -> Change | None:
        """A live ledger order that is not open at the exchange: ask the exchange by client id."""
        try:
            remote = self.gateway.fetch_order_by_client_id(self.symbol.symbol, order.client_order_id)
        except xerr.Ambiguous as exc:
            log.warning("%s order %s: query failed (%s); will retry", self.symbol.symbol, order.client_order_id, exc)
            return None
        if remote is not None:
            if remote.status == order.status or remote.is_open:
                if not self.dry_run:
                    services.order_apply_exchange_state(order, remote, writer=self.writer, note="resolved by client id")
                return None
            before = order.status
            if not self.dry_run:
                services.order_apply_exchange_state(order, remote, writer=self.writer, note="resolved by client id")
            changed = self.dry_run or order.status != before
            return Change("final_state", order, remote, "repaired" if not self.dry_run else "none",
                          f"{before} -> {remote.status}") if changed else None
        if order.status in (OrderStatus.PENDING, OrderStatus.UNKNOWN):
            signed_at = order.sent_at or order.created_at
            if timezone.now() - signed_at > self.not_found_is_final_after():
                if not self.dry_run:
                    services.order_transition(
                        order, OrderStatus.NOT_PLACED, writer=self.writer,
                        note="not found at the exchange after the request window",
                    )
                return Change("never_placed", order, None, "repaired" if not self.dry_run else "none")
            return None
        log.error("%s order %s is %s in the ledger but unknown to the exchange", self.symbol.symbol,
                  order.client_order_id, order.status)
        return Change("unknown_order", order, None, "reported", "live in the ledger, the exchange knows no such order")

    def adopt(self, remote: ExchangeOrder) -> Order | None:
        """An order with our prefix and no ledger row: give it one if its id maps to a slot of
        this symbol; otherwise leave it alone."""
        parsed = services.parse_client_order_id(remote.client_order_id)
        if (
            parsed is None
            or parsed.prefix != self.symbol.account.client_id_prefix
            or parsed.symbol_id != self.symbol.pk
            or parsed.side != remote.side
            or self.dry_run
        ):
            return None
        try:
            return services.order_adopt(symbol=self.symbol, writer=self.writer, remote=remote, parsed=parsed)
        except IntegrityError as exc:
            log.warning("%s cannot adopt %s: %s", self.symbol.symbol, remote.client_order_id, exc)
            return None

"""Writes to the trading ledger. Every change of an order, fill, slot or symbol goes through
these functions, which check the fence and the transition table in one transaction."""
from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from decimal import Decimal, localcontext

from django.db import IntegrityError, transaction
from django.utils import timezone

import notifications
from notifications import notify_on_commit
from trading import pnl
from trading.errors import FencedWrite, IllegalTransition, TradingError
from trading.exchange.types import FuturesAccount, FuturesPosition
from trading.models import (
    FINAL_STATUSES,
    LIVE_STATUSES,
    ORDER_TRANSITIONS,
    Fill,
    FundingPayment,
    GridSlot,
    Order,
    OrderEvent,
    OrderStatus,
    PositionSnapshot,
    Symbol,
)

log = logging.getLogger("quantmesh.trading")


@dataclass(frozen=True)
class Writer:
    """Who writes to the ledger: the instance id and the fencing token it holds for the
    symbol (0 in single-instance mode, where no lease is taken)."""

    instance_id: str
    fence_token: int = 0


def slot_key(symbol_id: int, level: int, side: str) -> str:
    return f"{symbol_id}:{level}:{side}"


def client_order_id(*, prefix: str, symbol_id: int, level: int, side: str, seq: int) -> str:
    """Deterministic per intent: symbol, slot level, side and the slot's order sequence number.
    Two instances deciding the same thing from the same ledger compute the same id, and a retry
    after an ambiguous reply reuses it; a new id is only taken after the previous order of the
    slot ended for certain (filled, canceled, rejected, never placed)."""
    sign = "m" if level < 0 else ""
    return f"{prefix}-{symbol_id}-{side[0]}{sign}{abs(level)}-{seq}"


def next_seq(*, symbol_id: int, level: int, side: str) -> int:
    return Order.objects.filter(symbol_id=symbol_id, level=level, side=side).count()


def fence_check(*, symbol_id: int, writer: Writer) -> None:
    """Raise FencedWrite unless writer.fence_token >= the symbol's stored fence; raise the
    stored fence to the token. Must run inside the transaction of the write it guards."""
    updated = Symbol.objects.filter(pk=symbol_id, fence_token__lte=writer.fence_token).update(
        fence_token=writer.fence_token
    )
    if updated != 1:
        stored = Symbol.objects.filter(pk=symbol_id).values_list("fence_token", flat=True).first()
        raise FencedWrite(
            f"fencing token {writer.fence_token} of {writer.instance_id} is older than "
            f"symbol {symbol_id}'s fence {stored}"
        )


@transaction.atomic
def order_create_intent(
    *,
    symbol: Symbol,
    writer: Writer,
    side: str,
    level: int,
    price: Decimal,
    amount: Decimal,
    seq: int | None = None,
    post_only: bool = True,
    signed_at=None,
) -> Order:
    """Write the PENDING intent row for a new order, after the fence check. The caller sends
    the order only after this commits. IntegrityError means the slot already has a live order
    or the intent already exists: do not send.

    `signed_at` is the timestamp the request will be signed with (sign before claim): stored
    as `sent_at`, it bounds when the exchange could still execute the request."""
    fence_check(symbol_id=symbol.pk, writer=writer)
    if seq is None:
        seq = next_seq(symbol_id=symbol.pk, level=level, side=side)
    cid = client_order_id(prefix=symbol.account.client_id_prefix, symbol_id=symbol.pk, level=level, side=side, seq=seq)
    order = Order(
        symbol=symbol,
        client_order_id=cid,
        active_slot=slot_key(symbol.pk, level, side),
        side=side,
        level=level,
        seq=seq,
        price=price,
        amount=amount,
        post_only=post_only,
        status=OrderStatus.PENDING,
        instance_id=writer.instance_id,
        fence_token=writer.fence_token,
        sent_at=signed_at,
    )
    # The symbol is a saved row the caller holds: checking that it exists would cost a query.
    order.full_clean(exclude=["symbol"], validate_unique=False, validate_constraints=False)
    order.save(force_insert=True)
    OrderEvent.objects.create(
        order=order, to_status=order.status, note="intent written", instance_id=writer.instance_id,
        fence_token=writer.fence_token,
    )
    return order


def check_transition(order: Order, to_status: str) -> None:
    allowed = ORDER_TRANSITIONS.get(order.status, frozenset())
    if to_status not in allowed:
        raise IllegalTransition(
            f"order {order.client_order_id} cannot go from {order.status} to {to_status}"
            + (" (it is final)" if order.status in FINAL_STATUSES else "")
        )


@transaction.atomic
def order_transition(order: Order, to_status: str, *, writer: Writer, note: str = "", **changes) -> Order:
    """Move an order to `to_status` if the transition table allows it, with optional field
    changes (exchange_order_id, filled_amount, average_price, fee, ...). Writes an OrderEvent.
    Raises IllegalTransition (nothing changes) or FencedWrite."""
    if to_status not in OrderStatus.values:
        raise IllegalTransition(f"{to_status!r} is not an order status")
    fence_check(symbol_id=order.symbol_id, writer=writer)
    current = Order.objects.select_for_update().get(pk=order.pk)
    _transition_locked(current, to_status, writer=writer, note=note, changes=changes)
    order.__dict__.update({k: v for k, v in current.__dict__.items() if not k.startswith("_")})
    return order


def _transition_locked(current: Order, to_status: str, *, writer: Writer, note: str, changes: dict) -> None:
    """`order_transition` on a row this transaction has fence-checked and read for update."""
    check_transition(current, to_status)
    unknown = set(changes) - _CHANGEABLE
    if unknown:
        raise TradingError(f"order fields {sorted(unknown)} cannot be changed by a transition")
    from_status = current.status
    for name, value in changes.items():
        setattr(current, name, value)
    current.status = to_status
    now = timezone.now()
    written = {"status", "updated_at", *changes}
    if to_status in FINAL_STATUSES:
        current.active_slot = None
        current.closed_at = now
        written |= {"active_slot", "closed_at"}
    current.save(update_fields=written)
    OrderEvent.objects.create(
        order=current, from_status=from_status, to_status=to_status, note=note[:300],
        instance_id=writer.instance_id, fence_token=writer.fence_token, created_at=now,
    )
    log.info("order %s %s -> %s %s", current.client_order_id, from_status, to_status, note)


_CHANGEABLE = {
    "exchange_order_id", "filled_amount", "average_price", "fee", "fee_currency", "last_error", "sent_at",
    "cancel_requested_at", "post_only",
}


@transaction.atomic
def symbol_pause(symbol: Symbol, *, reason: str, until=None) -> Symbol:
    was = Symbol.objects.filter(pk=symbol.pk).values_list("status", flat=True).first()
    Symbol.objects.filter(pk=symbol.pk).update(
        status=Symbol.Status.PAUSED, pause_reason=reason[:200], paused_until=until, updated_at=timezone.now()
    )
    symbol.refresh_from_db()
    log.warning("symbol %s paused: %s", symbol.symbol, reason)
    if was != Symbol.Status.PAUSED:
        when = f" until {until:%Y-%m-%d %H:%M} UTC" if until is not None else ""
        notify_on_commit("symbol_paused", f"{symbol} paused{when}: {reason}", subject=str(symbol))
    return symbol


@transaction.atomic
def symbol_resume(symbol: Symbol, *, by: str = "") -> Symbol:
    """Resume trading; `by` says who or what (for the log and the operator's message)."""
    was = Symbol.objects.filter(pk=symbol.pk).values_list("status", flat=True).first()
    Symbol.objects.filter(pk=symbol.pk).update(
        status=Symbol.Status.RUNNING, pause_reason="", paused_until=None, updated_at=timezone.now()
    )
    symbol.refresh_from_db()
    log.info("symbol %s resumed%s", symbol.symbol, f" ({by})" if by else "")
    if was != Symbol.Status.RUNNING:
        notify_on_commit("symbol_resumed", f"{symbol} resumed" + (f" ({by})" if by else ""), subject=str(symbol))
    return symbol




@transaction.atomic
def symbol_stop(symbol: Symbol, *, by: str) -> Symbol:
    """Stop trading the symbol for good (until resumed): no tick places or cancels anything."""
    was = Symbol.objects.filter(pk=symbol.pk).values_list("status", flat=True).first()
    Symbol.objects.filter(pk=symbol.pk).update(status=Symbol.Status.STOPPED, pause_reason=f"stopped {by}"[:200],
                                               paused_until=None, updated_at=timezone.now())
    symbol.refresh_from_db()
    log.warning("symbol %s stopped (%s)", symbol.symbol, by)
    if was != Symbol.Status.STOPPED:
        notify_on_commit("symbol_stopped", f"{symbol} stopped ({by}); its open orders stay at the exchange",
                         subject=str(symbol))
    return symbol


# --- fills and slots -----------------------------------------------------------------------------
@dataclass(frozen=True)
class FillResult:
    fill: Fill
    order: Order | None
    order_completed: bool  # this fill completed the order


def fill_record(
    *,
    symbol: Symbol,
    writer: Writer,
    trade_id: str,
    exchange_order_id: str,
    side: str,
    price: Decimal,
    amount: Decimal,
    fee: Decimal,
    fee_currency: str,
    is_maker: bool | None,
    traded_at,
    realized_pnl: Decimal | None = None,
) -> FillResult | None:
    """Apply one exchange trade: append the Fill, advance the order, move the slot's holding and
    realised PnL. Idempotent: a trade id seen before changes nothing and returns None.
    `realized_pnl` is a futures exchange's own figure for the trade, kept on the Fill for audit;
    the slot's PnL is computed here the same way for spot and futures."""
    try:
        return _fill_record(symbol=symbol, writer=writer, trade_id=trade_id, exchange_order_id=exchange_order_id,
                            side=side, price=price, amount=amount, fee=fee, fee_currency=fee_currency,
                            is_maker=is_maker, traded_at=traded_at, realized_pnl=realized_pnl)
    except IntegrityError:
        # The transaction is rolled back whole. A trade seen before is not an error (another
        # process applied it first, or it was already in the ledger); anything else is.
        if Fill.objects.filter(account_id=symbol.account_id, exchange_trade_id=trade_id).exists():
            return None
        raise


@transaction.atomic
def _fill_record(*, symbol: Symbol, writer: Writer, trade_id: str, exchange_order_id: str, side: str, price: Decimal,
                 amount: Decimal, fee: Decimal, fee_currency: str, is_maker: bool | None, traded_at,
                 realized_pnl: Decimal | None) -> FillResult:
    fence_check(symbol_id=symbol.pk, writer=writer)
    order = (
        Order.objects.select_for_update().filter(symbol=symbol, exchange_order_id=exchange_order_id).first()
        if exchange_order_id else None
    )
    # A trade id the ledger holds already fails here (unique per account), before anything moves.
    fill = Fill.objects.create(
        account_id=symbol.account_id, symbol=symbol, order=order, exchange_trade_id=trade_id,
        exchange_order_id=exchange_order_id or "", side=side, price=price, amount=amount, fee=fee,
        fee_currency=fee_currency, is_maker=is_maker, traded_at=traded_at, realized_pnl=realized_pnl,
    )
    if order is None:
        log.warning("%s: trade %s of order %s has no ledger row (left to reconciliation)", symbol.symbol, trade_id, exchange_order_id)
        return FillResult(fill, None, False)

    base, quote = symbol.symbol.split("/")
    filled = order.filled_amount + amount
    with localcontext() as ctx:
        ctx.prec = 60
        average = pnl.money((((order.average_price or Decimal(0)) * order.filled_amount) + price * amount) / filled)
    order_fee = order.fee + fee if order.fee_currency in ("", fee_currency) else order.fee
    completed = filled >= order.amount
    to_status = OrderStatus.FILLED if completed else OrderStatus.PARTIALLY_FILLED
    changes = dict(filled_amount=min(filled, order.amount), average_price=average, fee=order_fee,
                   fee_currency=order.fee_currency or fee_currency)
    if order.status in (OrderStatus.CANCELED, OrderStatus.EXPIRED) or order.status == to_status == OrderStatus.FILLED:
        # A late trade of an order already closed: record the amounts without a transition.
        Order.objects.filter(pk=order.pk).update(**changes)
    else:
        # The order row is this transaction's, fence-checked and read for update above.
        _transition_locked(order, to_status, writer=writer, note=f"trade {trade_id}: {amount} @ {price}", changes=changes)

    slot, _ = GridSlot.objects.select_for_update().get_or_create(symbol=symbol, level=order.level)
    book = pnl.apply_fill(pnl.SlotBook(slot.holding, slot.cost, slot.realized_pnl), side=side, price=price,
                          amount=amount, fee=fee, fee_currency=fee_currency, base=base, quote=quote)
    gained = book.realized - slot.realized_pnl
    slot.holding, slot.cost, slot.realized_pnl = book.holding, book.cost, book.realized
    if side != "buy" and completed:
        slot.round_trips += 1
    slot.save(update_fields=["holding", "cost", "realized_pnl", "round_trips", "updated_at"])
    # Every fill moves realised PnL (a buy by its fee); a completed sell completes a round trip.
    subject, trips = str(symbol), int(side != "buy" and completed)
    transaction.on_commit(lambda: notifications.round_trips(subject, count=trips, profit=gained, quote=quote))
    return FillResult(fill, order, completed)


def funding_record(*, symbol: Symbol, tran_id: str, amount: Decimal, asset: str, funded_at) -> FundingPayment | None:
    """Append one funding payment as the exchange booked it. Idempotent: a transaction id seen
    before changes nothing and returns None."""
    try:
        with transaction.atomic():
            return FundingPayment.objects.create(
                account_id=symbol.account_id, symbol=symbol, exchange_tran_id=tran_id, amount=amount, asset=asset,
                funded_at=funded_at,
            )
    except IntegrityError:
        return None


def position_snapshot_record(symbol: Symbol, position: FuturesPosition, account: FuturesAccount) -> PositionSnapshot:
    """Record what the exchange reports of a futures position and its account now."""
    return PositionSnapshot.objects.create(
        symbol=symbol, qty=position.qty, entry_price=position.entry_price, mark_price=position.mark_price,
        unrealized_pnl=position.unrealized_pnl, liquidation_price=position.liquidation_price,
        leverage=position.leverage, margin_mode=position.margin_mode, wallet_balance=account.wallet_balance,
        available_balance=account.available_balance, maint_margin=account.maint_margin,
    )


@transaction.atomic
def symbol_store_market(symbol: Symbol, *, tick_size: Decimal, step_size: Decimal, min_notional: Decimal) -> Symbol:
    Symbol.objects.filter(pk=symbol.pk).update(tick_size=tick_size, step_size=step_size, min_notional=min_notional)
    symbol.tick_size, symbol.step_size, symbol.min_notional = tick_size, step_size, min_notional
    return symbol


@transaction.atomic
def symbol_anchor(symbol: Symbol, *, price: Decimal) -> Decimal:
    """Anchor the symbol's lattice once; later calls return the stored anchor unchanged."""
    Symbol.objects.filter(pk=symbol.pk, anchor_price__isnull=True).update(anchor_price=price)
    symbol.anchor_price = Symbol.objects.values_list("anchor_price", flat=True).get(pk=symbol.pk)
    return symbol.anchor_price


def order_apply_exchange_state(order: Order, remote, *, writer: Writer, note: str = "") -> Order:
    """Bring a ledger order in line with what the exchange reports (`remote`: an
    `ExchangeOrder`). Fill amounts come only from trades (`fill_record`), so an order the
    exchange reports filled or canceled with more executed than the ledger has seen stays as it
    is until those trades are applied."""
    changes = {}
    if remote.exchange_order_id and order.exchange_order_id != remote.exchange_order_id:
        changes["exchange_order_id"] = remote.exchange_order_id
    executed_unseen = remote.filled > order.filled_amount
    target = remote.status
    if target in (OrderStatus.OPEN, OrderStatus.PARTIALLY_FILLED, OrderStatus.FILLED):
        # Live or (partly) filled at the exchange: the ledger learns the fills from trades.
        if order.status in (OrderStatus.PENDING, OrderStatus.UNKNOWN):
            return order_transition(order, OrderStatus.OPEN, writer=writer, note=note or "acknowledged", **changes)
    elif target in (OrderStatus.CANCELED, OrderStatus.EXPIRED, OrderStatus.REJECTED):
        if executed_unseen:
            log.info("order %s is %s with fills not yet applied; waiting for its trades", order.client_order_id, target)
        elif order.status in LIVE_STATUSES:
            return order_transition(order, target, writer=writer, note=note or f"{target} at the exchange", **changes)
    if changes and order.status in LIVE_STATUSES:
        Order.objects.filter(pk=order.pk).update(**changes)
        for name, value in changes.items():
            setattr(order, name, value)
    return order


def order_mark_cancel_requested(order: Order, *, writer: Writer) -> None:
    with transaction.atomic():
        fence_check(symbol_id=order.symbol_id, writer=writer)
        now = timezone.now()
        Order.objects.filter(pk=order.pk).update(cancel_requested_at=now)
        order.cancel_requested_at = now


# --- client ids and adoption ---------------------------------------------------------------------
_CID = re.compile(
    r"^(?P<prefix>[a-z0-9]{1,8})-(?P<symbol>\d+)-(?P<side>[bs])(?P<neg>m?)(?P<level>\d+)-(?P<seq>\d+)$"
)


@dataclass(frozen=True)
class ParsedClientId:
    prefix: str
    symbol_id: int
    side: str
    level: int
    seq: int


def parse_client_order_id(cid: str) -> ParsedClientId | None:
    """The parts of one of our client order ids, or None for anything else (foreign orders)."""
    match = _CID.match(cid or "")
    if match is None:
        return None
    level = int(match["level"]) * (-1 if match["neg"] else 1)
    return ParsedClientId(match["prefix"], int(match["symbol"]), "buy" if match["side"] == "b" else "sell", level,
                          int(match["seq"]))


@transaction.atomic
def order_adopt(*, symbol: Symbol, writer: Writer, remote, parsed: ParsedClientId) -> Order:
    """Give an exchange order that carries our id (but has no ledger row) its row, as OPEN;
    fills and final states then follow through the normal paths. IntegrityError when its slot
    is held by another live order."""
    fence_check(symbol_id=symbol.pk, writer=writer)
    order = Order.objects.create(
        symbol=symbol, client_order_id=remote.client_order_id,
        active_slot=slot_key(symbol.pk, parsed.level, parsed.side) if remote.is_open else None,
        side=parsed.side, level=parsed.level, seq=parsed.seq, price=remote.price, amount=remote.amount,
        post_only=remote.post_only, status=OrderStatus.OPEN, exchange_order_id=remote.exchange_order_id,
        instance_id=writer.instance_id, fence_token=writer.fence_token,
    )
    OrderEvent.objects.create(order=order, to_status=OrderStatus.OPEN, note="adopted from the exchange",
                              instance_id=writer.instance_id, fence_token=writer.fence_token)
    log.warning("%s adopted order %s from the exchange", symbol.symbol, order.client_order_id)
    return order

"""Writes to the trading ledger. Every change of an order, fill, slot or symbol goes through
these functions, which check the fence and the transition table in one transaction."""
from __future__ import annotations

import logging
from dataclasses import dataclass
from decimal import Decimal

from django.db import IntegrityError, transaction
from django.utils import timezone

from trading.errors import FencedWrite, IllegalTransition, TradingError
from trading.models import (
    FINAL_STATUSES,
    ORDER_TRANSITIONS,
    Order,
    OrderEvent,
    OrderStatus,
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


def client_order_id(*, prefix: str, symbol_id: int, level: int, side: str, round_trip: int) -> str:
    """Deterministic per intent: the same slot, side and cycle always give the same id, so a
    retry (or a second instance deciding the same thing) cannot create a second order."""
    sign = "m" if level < 0 else ""
    return f"{prefix}-{symbol_id}-{side[0]}{sign}{abs(level)}-{round_trip}"


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
    round_trip: int = 0,
    post_only: bool = True,
) -> Order:
    """Write the PENDING intent row for a new order, after the fence check. The caller sends
    the order only after this commits. IntegrityError means the slot already has a live order
    or the intent already exists: do not send."""
    fence_check(symbol_id=symbol.pk, writer=writer)
    order = Order(
        symbol=symbol,
        client_order_id=client_order_id(
            prefix=symbol.account.client_id_prefix, symbol_id=symbol.pk, level=level, side=side, round_trip=round_trip
        ),
        active_slot=slot_key(symbol.pk, level, side),
        side=side,
        level=level,
        round_trip=round_trip,
        price=price,
        amount=amount,
        post_only=post_only,
        status=OrderStatus.PENDING,
        instance_id=writer.instance_id,
        fence_token=writer.fence_token,
    )
    order.full_clean(validate_unique=False, validate_constraints=False)
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
    check_transition(current, to_status)
    unknown = set(changes) - _CHANGEABLE
    if unknown:
        raise TradingError(f"order fields {sorted(unknown)} cannot be changed by a transition")
    from_status = current.status
    for name, value in changes.items():
        setattr(current, name, value)
    current.status = to_status
    now = timezone.now()
    if to_status in FINAL_STATUSES:
        current.active_slot = None
        current.closed_at = now
    current.save()
    OrderEvent.objects.create(
        order=current, from_status=from_status, to_status=to_status, note=note[:300],
        instance_id=writer.instance_id, fence_token=writer.fence_token, created_at=now,
    )
    log.info("order %s %s -> %s %s", current.client_order_id, from_status, to_status, note)
    order.__dict__.update({k: v for k, v in current.__dict__.items() if not k.startswith("_")})
    return order


_CHANGEABLE = {
    "exchange_order_id", "filled_amount", "average_price", "fee", "fee_currency", "last_error", "sent_at",
    "cancel_requested_at", "post_only",
}


@transaction.atomic
def symbol_pause(symbol: Symbol, *, reason: str, until=None) -> Symbol:
    Symbol.objects.filter(pk=symbol.pk).update(
        status=Symbol.Status.PAUSED, pause_reason=reason[:200], paused_until=until, updated_at=timezone.now()
    )
    symbol.refresh_from_db()
    log.warning("symbol %s paused: %s", symbol.symbol, reason)
    return symbol


@transaction.atomic
def symbol_resume(symbol: Symbol) -> Symbol:
    Symbol.objects.filter(pk=symbol.pk).update(
        status=Symbol.Status.RUNNING, pause_reason="", paused_until=None, updated_at=timezone.now()
    )
    symbol.refresh_from_db()
    log.info("symbol %s resumed", symbol.symbol)
    return symbol


__all__ = [
    "Writer", "client_order_id", "fence_check", "order_create_intent", "order_transition", "slot_key",
    "symbol_pause", "symbol_resume", "IntegrityError",
]

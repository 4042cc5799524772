"""The services behind the admin's order actions. `orders_cancel_from_admin` cancels through the
engine, under each order's cancel lock, exactly as the bot does."""
from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass

from trading import services
from trading.models import Order, OrderStatus, Symbol

log = logging.getLogger("quantmesh.admin")

CANCEL_MAX_ORDERS = 100  # orders one admin cancel may send (one exchange request each)


@dataclass(frozen=True)
class CancelOutcome:
    client_order_id: str
    ok: bool
    detail: str


def orders_cancel_from_admin(orders: Iterable[Order], user) -> list[CancelOutcome]:
    """Cancel live orders for an operator: per symbol one gateway, one lock service and one
    engine writing as `admin:<username>` with the symbol's current fence token; each order goes
    through `SymbolEngine.cancel`, under its cancel lock, and the exchange's answer is applied
    to the ledger. Final orders are left alone. Never raises for one order's trouble: every
    order gets an outcome."""
    from locking.setup import lock_service_from_settings
    from trading.engine import SymbolEngine, TickResult
    from trading.errors import IllegalTransition, TradingError
    from trading.exchange.errors import ExchangeFailure
    from trading.exchange.session import session_for

    writer_id = f"admin:{user.get_username()}"[:64]
    by_symbol: dict[int, list[Order]] = {}
    for order in orders:
        by_symbol.setdefault(order.symbol_id, []).append(order)
    outcomes: list[CancelOutcome] = []
    for symbol_id, group in by_symbol.items():
        symbol = Symbol.objects.select_related("account").get(pk=symbol_id)
        live = []
        for order in group:
            order.refresh_from_db()
            if order.is_live:
                live.append(order)
            else:
                outcomes.append(CancelOutcome(order.client_order_id, False, f"already {order.get_status_display()}"))
        if not live:
            continue
        try:
            gateway = session_for(symbol.account).gateway()
            locks = lock_service_from_settings(instance_id=writer_id)
        except Exception as exc:  # no exchange or no lock service: nothing is sent (fail closed)
            log.error("admin cancel for %s could not start: %s", symbol, exc)
            outcomes += [CancelOutcome(o.client_order_id, False, f"not sent: {exc}") for o in live]
            continue
        try:
            engine = SymbolEngine(symbol, gateway, locks, writer=services.Writer(writer_id, symbol.fence_token))
            for order in live:
                result = TickResult()
                try:
                    done = engine.cancel(order, result, reason=f"canceled from the admin by {user.get_username()}")
                except IllegalTransition:
                    # The bot applied the exchange's answer first (its own sync saw the cancel).
                    order.refresh_from_db()
                    done = order.status == OrderStatus.CANCELED
                    if not done:
                        outcomes.append(CancelOutcome(order.client_order_id, False, f"already {order.get_status_display()}"))
                        continue
                except (ExchangeFailure, TradingError) as exc:
                    outcomes.append(CancelOutcome(order.client_order_id, False, f"failed: {exc}"))
                    continue
                order.refresh_from_db()
                if done:
                    outcomes.append(CancelOutcome(order.client_order_id, True, order.get_status_display()))
                elif result.conflicts:
                    outcomes.append(CancelOutcome(order.client_order_id, False, "cancel lock busy (another process is canceling it)"))
                elif result.lock_errors:
                    outcomes.append(CancelOutcome(order.client_order_id, False, "lock service unavailable; not sent"))
                elif not order.is_live:
                    outcomes.append(CancelOutcome(order.client_order_id, False, f"already {order.get_status_display()} at the exchange"))
                else:
                    outcomes.append(CancelOutcome(order.client_order_id, False, "not confirmed by the exchange; the next sync resolves it"))
        finally:
            locks.close()
    for outcome in outcomes:
        log.info("admin %s cancel %s: %s", writer_id, outcome.client_order_id, outcome.detail)
    return outcomes

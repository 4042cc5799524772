"""Ledger rows for the dashboard tests, written through the services as the bot writes them."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone
from decimal import Decimal

import pytest

from tests.factories import make_account, make_symbol
from trading import services
from trading.models import OrderStatus

WRITER = services.Writer("test-bot", 0)
T0 = datetime(2026, 3, 1, 12, 0, 0, tzinfo=timezone.utc)


def open_order(symbol, side: str, level: int, price: str, amount: str, exchange_id: str, *, writer=WRITER):
    order = services.order_create_intent(
        symbol=symbol, writer=writer, side=side, level=level, price=Decimal(price), amount=Decimal(amount)
    )
    return services.order_transition(order, OrderStatus.OPEN, writer=writer, exchange_order_id=exchange_id)


def trade(symbol, order, trade_id: str, price: str, amount: str, fee: str, fee_currency: str, minutes: int):
    return services.fill_record(
        symbol=symbol, writer=WRITER, trade_id=trade_id, exchange_order_id=order.exchange_order_id if order else "999",
        side=order.side if order else "buy", price=Decimal(price), amount=Decimal(amount), fee=Decimal(fee),
        fee_currency=fee_currency, is_maker=True, traded_at=T0 + timedelta(minutes=minutes),
    )


@pytest.fixture
def symbol(db):
    """BTC/USDT anchored at 60000 with a 200 interval on a 0.01 tick; windows of 3."""
    return make_symbol(
        make_account(), anchor_price=Decimal("60000"), price_interval=Decimal("200"), buy_window_size=3,
        sell_window_size=3,
    )

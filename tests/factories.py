"""Small builders for test data (plain functions: explicit defaults, override by keyword)."""
from __future__ import annotations

from decimal import Decimal

from trading.models import ExchangeAccount, Symbol


def make_account(**overrides) -> ExchangeAccount:
    fields = {"name": "paper", "exchange_id": "binance", "paper": True, "client_id_prefix": "qm"}
    fields.update(overrides)
    return ExchangeAccount.objects.create(**fields)


def make_symbol(account: ExchangeAccount | None = None, **overrides) -> Symbol:
    fields = {
        "account": account or make_account(),
        "symbol": "BTC/USDT",
        "price_interval": Decimal("100"),
        "order_quantity": Decimal("30"),
        "min_order_value": Decimal("10"),
        "buy_window_size": 5,
        "sell_window_size": 5,
        "tick_size": Decimal("0.01"),
        "step_size": Decimal("0.00001"),
        "min_notional": Decimal("5"),
    }
    fields.update(overrides)
    return Symbol.objects.create(**fields)

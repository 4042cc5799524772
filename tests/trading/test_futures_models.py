"""Futures columns and ledgers: their rules hold in the database on every engine."""
from datetime import UTC, datetime
from decimal import Decimal

import pytest
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction

from tests.factories import make_account, make_symbol
from trading.models import FundingPayment, MarketType, Symbol

pytestmark = pytest.mark.django_db(transaction=True)


def test_a_symbol_defaults_to_keeping_the_exchanges_leverage_and_margin_mode():
    symbol = make_symbol()
    assert (symbol.leverage, symbol.margin_mode, symbol.max_leverage) == (None, "", 10)
    assert symbol.account.market_type == MarketType.SPOT and not symbol.account.is_futures


@pytest.mark.parametrize("field, value", [
    ("leverage", 0), ("leverage", 126), ("max_leverage", 0), ("margin_mode", "hedge"),
    ("liquidation_buffer", Decimal("1")), ("liquidation_buffer", Decimal("-0.1")),
])
def test_the_database_refuses_futures_settings_out_of_range(field, value):
    symbol = make_symbol()
    with pytest.raises(IntegrityError), transaction.atomic():
        Symbol.objects.filter(pk=symbol.pk).update(**{field: value})


def test_validation_names_a_leverage_above_the_maximum():
    symbol = make_symbol()
    symbol.leverage, symbol.max_leverage = 20, 10
    with pytest.raises(ValidationError) as excinfo:
        symbol.full_clean()
    assert "leverage 20 is above max_leverage 10" in str(excinfo.value)


def test_a_funding_payment_is_stored_once_per_exchange_transaction():
    account = make_account(market_type=MarketType.USDM)
    symbol = make_symbol(account=account)
    row = dict(account=account, symbol=symbol, exchange_tran_id="9689322392", amount=Decimal("-0.05"),
               asset="USDT", funded_at=datetime(2026, 12, 1, 8, tzinfo=UTC))
    FundingPayment.objects.create(**row)
    with pytest.raises(IntegrityError), transaction.atomic():
        FundingPayment.objects.create(**row)
    assert FundingPayment.objects.get().amount == Decimal("-0.05")

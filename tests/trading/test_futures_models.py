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


def test_funding_record_appends_once_and_snapshots_keep_what_the_exchange_said():
    from trading import services
    from trading.exchange.types import FuturesAccount, FuturesPosition
    from trading.models import PositionSnapshot

    symbol = make_symbol(account=make_account(market_type=MarketType.USDM))
    at = datetime(2026, 12, 1, 16, tzinfo=UTC)
    first = services.funding_record(symbol=symbol, tran_id="7", amount=Decimal("-1.47"), asset="USDT", funded_at=at)
    again = services.funding_record(symbol=symbol, tran_id="7", amount=Decimal("-1.47"), asset="USDT", funded_at=at)
    assert first is not None and again is None
    assert FundingPayment.objects.filter(symbol=symbol).count() == 1
    position = FuturesPosition("BTC/USDT", Decimal("0.1"), Decimal("49000"), Decimal("48900"), Decimal("-10"),
                               Decimal("40160.6"), "cross", 20)
    account = FuturesAccount("USDT", Decimal("1000"), Decimal("990"), Decimal("745"), Decimal("245"),
                             Decimal("19.56"), Decimal("-10"))
    services.position_snapshot_record(symbol, position, account)
    row = PositionSnapshot.objects.get(symbol=symbol)
    assert (row.qty, row.liquidation_price, row.available_balance) == (Decimal("0.1"), Decimal("40160.6"), Decimal("745"))

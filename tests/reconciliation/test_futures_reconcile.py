"""Reconciling a USDⓈ-M futures symbol against the simulator's fapi: the position against the sum
of slot holdings, funding payments stored once, and a snapshot of the position per pass."""
from __future__ import annotations

from decimal import Decimal as D

import pytest

from locking.nop import NopLock
from reconciliation.models import ReconcileRun
from reconciliation.services import Reconciler
from tests.factories import make_account, make_symbol
from trading import services
from trading.exchange.accounts import gateway_for
from trading.models import FundingPayment, GridSlot, MarketType, OrderStatus, PositionSnapshot, Symbol

pytestmark = pytest.mark.django_db(transaction=True)
WRITER = services.Writer(instance_id="test", fence_token=0)


@pytest.fixture
def symbol(fsim):
    account = make_account(name="futures", market_type=MarketType.USDM, base_url=fsim.base_url)
    return make_symbol(account=account, price_interval=D("100"), order_quantity=D("500"), step_size=D("0.001"))


def reconcile(symbol):
    symbol = Symbol.objects.select_related("account").get(pk=symbol.pk)
    return Reconciler(symbol, gateway_for(symbol.account), NopLock(), instance_id="test",
                      trigger=ReconcileRun.Trigger.CRON).run()


def grid_buy(symbol, *, level: int, price: str, amount: str):
    """A grid buy as the engine places it: intent first, then the order at the exchange."""
    order = services.order_create_intent(symbol=symbol, writer=WRITER, side="buy", level=level, price=D(price),
                                         amount=D(amount), seq=0)
    remote = gateway_for(symbol.account).create_limit_order(
        symbol="BTC/USDT", side="buy", amount=D(amount), price=D(price), client_order_id=order.client_order_id,
        post_only=True)
    services.order_transition(order, OrderStatus.OPEN, writer=WRITER, exchange_order_id=remote.exchange_order_id)
    return order


def test_a_fill_missed_while_down_is_applied_and_the_position_matches_the_slots(fsim, symbol):
    first = reconcile(symbol)
    assert first.status == "clean", first.findings
    assert Symbol.objects.get(pk=symbol.pk).position_offset == 0  # flat before the grid
    grid_buy(symbol, level=-1, price="49900", amount="0.010")
    fsim.futures.set_price("BTCUSDT", D("49800"))
    outcome = reconcile(symbol)
    assert sorted((f.kind, f.action) for f in outcome.findings) == [("missed_fill", "repaired")]
    assert GridSlot.objects.get(symbol=symbol, level=-1).holding == D("0.010")  # the fee is in USDT
    assert reconcile(symbol).findings == []  # position 0.010 = slots 0.010 + offset 0
    snapshot = PositionSnapshot.objects.filter(symbol=symbol).first()
    assert (snapshot.qty, snapshot.entry_price, snapshot.mark_price) == (D("0.010"), D("49900"), D("49800"))
    assert snapshot.liquidation_price is None  # 10000 USDT carry 0.01 BTC to zero


def test_a_position_the_grid_did_not_open_pauses_the_symbol(fsim, symbol):
    reconcile(symbol)
    engine = fsim.futures
    engine.place_order("BTCUSDT", "BUY", "LIMIT", D("0.020"), D("49900"), "manual-1", foreign=True,
                       time_in_force="GTX")
    engine.set_price("BTCUSDT", D("49800"))  # someone else's 0.02 BTC, worth 996 > one 500 USDT grid order
    outcome = reconcile(symbol)
    drift = [f for f in outcome.findings if f.kind == "position_drift"]
    assert [(f.action, D(f.exchange_view["position"]), D(f.exchange_view["drift"])) for f in drift] == \
        [("paused", D("0.02"), D("0.02"))]
    paused = Symbol.objects.get(pk=symbol.pk)
    assert paused.status == "paused" and "position drift" in paused.pause_reason


def test_funding_payments_are_stored_once(fsim, symbol):
    reconcile(symbol)
    grid_buy(symbol, level=-1, price="49900", amount="0.010")
    fsim.futures.set_price("BTCUSDT", D("49800"))
    fsim.futures.set_funding_rate(D("0.0002"))
    fsim.futures.step(8 * 60)  # across a funding time
    reconcile(symbol)
    reconcile(symbol)
    (payment,) = FundingPayment.objects.filter(symbol=symbol)
    assert payment.amount == D("-0.09960000")  # 0.01 x 49800 x 0.0002, paid by the long
    assert payment.asset == "USDT"


def test_a_fill_landing_during_the_first_pass_is_not_taken_into_the_offset(fsim, symbol):
    """The first pass records what the account holds beyond the grid. A grid fill landing right
    after its trades request must be booked as the grid's, not frozen into the offset (which
    would show as a drift of one order for good once the ledger books the fill)."""
    grid_buy(symbol, level=-1, price="49900", amount="0.010")
    gateway = gateway_for(symbol.account)
    fetch_my_trades = gateway.fetch_my_trades
    calls = []

    def trades_then_a_fill(*args, **kwargs):
        trades = fetch_my_trades(*args, **kwargs)
        calls.append(len(trades))
        if len(calls) == 1:
            fsim.futures.set_price("BTCUSDT", D("49800"))  # fills the buy just after the request
        return trades

    gateway.fetch_my_trades = trades_then_a_fill
    symbol = Symbol.objects.select_related("account").get(pk=symbol.pk)
    first = Reconciler(symbol, gateway, NopLock(), instance_id="test", trigger=ReconcileRun.Trigger.CRON).run()
    assert calls[0] == 0 and first.status in ("clean", "repaired"), first.findings
    assert Symbol.objects.get(pk=symbol.pk).position_offset == 0
    assert GridSlot.objects.get(symbol=symbol, level=-1).holding == D("0.010")
    assert reconcile(symbol).findings == []

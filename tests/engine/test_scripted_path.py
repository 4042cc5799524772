"""The grid end to end against the simulator over real HTTP: a price path that falls five levels
and comes back, with the exact orders, fills and PnL, and the ledger equal to the exchange."""
from decimal import Decimal

import pytest

from trading.models import Fill, GridSlot, Order

pytestmark = pytest.mark.django_db(transaction=True)

# Anchor 60000, interval 200: levels 0, -1 (59800) ... -5 (59000) and back.
PATH = [str(60000 - 200 * k) for k in (0, 1, 2, 3, 4, 5, 4, 3, 2, 1, 0)]


def run_path(sim, engine):
    for price in PATH:
        sim.engine.set_price("BTC/USDT", Decimal(price))
        engine.tick()
    engine.tick()  # one more at the top: nothing left to react to


def test_falling_five_levels_and_back(sim, make_engine):
    engine = make_engine()
    run_path(sim, engine)
    fee = Decimal("0.001")

    filled_buys = Order.objects.filter(side="buy", status="filled").order_by("level")
    filled_sells = Order.objects.filter(side="sell", status="filled").order_by("level")
    # Every level from -1 to -5 bought once on the way down and sold one level up on the way back.
    assert [o.level for o in filled_buys] == [-5, -4, -3, -2, -1]
    assert [o.level for o in filled_sells] == [-5, -4, -3, -2, -1]
    for buy in filled_buys:
        price = Decimal(60000) + buy.level * Decimal(200)
        assert buy.price == price
        assert buy.amount == (Decimal(50) / price).quantize(Decimal("0.00001"), rounding="ROUND_DOWN")
        assert buy.client_order_id == f"qm-{buy.symbol_id}-bm{-buy.level}-0"
    for sell in filled_sells:
        buy = filled_buys.get(level=sell.level)
        held = buy.amount - buy.amount * fee  # the buy fee is taken in BTC
        assert sell.price == buy.price + Decimal(200)
        assert sell.amount == held.quantize(Decimal("0.00001"), rounding="ROUND_DOWN")

    # Realised PnL = sum of (sell - buy) x amount minus every fee valued in USDT, to the last unit.
    expected = Decimal(0)
    for sell in filled_sells:
        expected += (sell.price - filled_buys.get(level=sell.level).price) * sell.amount
    for fill in Fill.objects.all():
        expected -= fill.fee * fill.price if fill.fee_currency == "BTC" else fill.fee
    realized = sum((s.realized_pnl for s in GridSlot.objects.all()), Decimal(0))
    assert realized == expected
    assert realized > 0

    assert_ledger_equals_exchange(sim)


def assert_ledger_equals_exchange(sim):
    remote = {o["clientOrderId"]: o for o in sim.engine.ledger("BTC/USDT")}
    local = {o.client_order_id: o for o in Order.objects.exclude(status__in=["rejected", "not_placed"])}
    assert set(remote) == set(local)
    names = {"NEW": "open", "PARTIALLY_FILLED": "partially_filled", "FILLED": "filled", "CANCELED": "canceled"}
    for cid, row in remote.items():
        order = local[cid]
        assert names[row["status"]] == order.status, cid
        assert Decimal(row["executedQty"]) == order.filled_amount, cid
        assert Decimal(row["price"]) == order.price and Decimal(row["origQty"]) == order.amount, cid
        assert str(row["orderId"]) == order.exchange_order_id
    trades = sim.engine.trades("BTC/USDT")
    assert {str(t.trade_id) for t in trades} == set(Fill.objects.values_list("exchange_trade_id", flat=True))

"""The dashboard's selectors: the ladder, the last seen price and the realised-PnL series, with
exact Decimals."""
from decimal import Decimal

from tests.dashboard.conftest import T0, WRITER, open_order, trade
from tests.factories import make_symbol
from trading import selectors, services
from trading.models import GridSlot, Order, OrderStatus, Symbol
from trading.selectors import LadderOrder


def test_ladder_around_the_latest_fill(symbol):
    buy = open_order(symbol, "buy", -1, "59800", "0.00083", "1")
    for level, exchange_id in ((-2, "2"), (-3, "3"), (-4, "4")):
        open_order(symbol, "buy", level, str(60000 + 200 * level), "0.00084", exchange_id)
    trade(symbol, buy, "t1", "59800", "0.00083", "0.049634", "USDT", minutes=1)
    sell = open_order(symbol, "sell", -1, "60000", "0.00083", "5")

    ladder = selectors.ladder_for(Symbol.objects.get(pk=symbol.pk))

    assert ladder.last_price == selectors.LastPrice(Decimal("59800"), "latest fill", T0.replace(minute=1))
    # Level -1 is nearest; rows reach the windows (3) plus a margin of 2 on each side, highest first.
    assert [row.level for row in ladder.rows] == list(range(4, -7, -1))
    assert [row.price for row in ladder.rows] == [Decimal(60000 + 200 * level) for level in range(4, -7, -1)]
    by_level = {row.level: row for row in ladder.rows}
    assert by_level[-1].nearest and sum(row.nearest for row in ladder.rows) == 1
    # The marker goes above the first row at or below the price: level -1, the sixth row.
    assert ladder.marker_index == 5
    # The filled buy's slot holds inventory at its own level; its sell sits one level up.
    assert by_level[-1].holding == Decimal("0.00083") and by_level[-1].cost == Decimal("49.634")
    assert by_level[-1].buys == ()
    assert by_level[0].sells == (
        LadderOrder(sell.client_order_id, "sell", -1, Decimal("60000"), Decimal("0.00083"), Decimal("0"), OrderStatus.OPEN),
    )
    assert [o.price for level in (-2, -3, -4) for o in by_level[level].buys] == [
        Decimal("59600"), Decimal("59400"), Decimal("59200")]
    assert all(o.amount == Decimal("0.00084") for level in (-2, -3, -4) for o in by_level[level].buys)
    assert sum(len(row.buys) + len(row.sells) for row in ladder.rows) == 4
    assert ladder.hidden_orders == 0
    assert all(row.holding == 0 for row in ladder.rows if row.level != -1)
    assert (ladder.held_slots, ladder.dust_slots, by_level[-1].dust) == (1, 0, False)


def test_holdings_below_one_step_are_dust(symbol):
    # A buy whose fee was taken in the base asset leaves less than a step after its sell.
    buy = open_order(symbol, "buy", -1, "59800", "0.00083", "1")
    trade(symbol, buy, "t1", "59800", "0.00083", "0.00000083", "BTC", minutes=1)
    sell = open_order(symbol, "sell", -1, "60000", "0.00082", "2")
    trade(symbol, sell, "t2", "60000", "0.00082", "0.0492", "USDT", minutes=2)
    ladder = selectors.ladder_for(symbol)
    (row,) = [row for row in ladder.rows if row.holding]
    assert (row.level, row.holding, row.dust) == (-1, Decimal("0.00000917"), True)
    assert (ladder.held_slots, ladder.dust_slots) == (0, 1)


def test_midpoint_of_open_orders_then_the_anchor(symbol):
    assert selectors.last_seen_price(symbol) == selectors.LastPrice(Decimal("60000"), "lattice anchor")
    open_order(symbol, "buy", -1, "59800.01", "0.001", "1")
    assert selectors.last_seen_price(symbol).source == "lattice anchor"  # one side only: no midpoint
    open_order(symbol, "sell", -1, "60200.02", "0.001", "2")
    price = selectors.last_seen_price(symbol)
    assert price == selectors.LastPrice(Decimal("60000.015"), "open orders midpoint")
    ladder = selectors.ladder_for(symbol)
    assert [row.level for row in ladder.rows if row.nearest] == [0]
    # Rows at 60000 and below come after the marker; 60000 is below 60000.015.
    assert ladder.rows[ladder.marker_index].price == Decimal("60000")
    assert all(row.price > price.value for row in ladder.rows[: ladder.marker_index])


def test_no_ladder_before_the_lattice_is_anchored(db):
    symbol = make_symbol(anchor_price=None)
    assert selectors.ladder_for(symbol) is None
    assert selectors.last_seen_price(symbol) is None


def test_a_tall_ladder_is_cut_around_the_price(symbol):
    open_order(symbol, "buy", -40, "52000", "0.001", "1")
    open_order(symbol, "buy", -1, "59800", "0.001", "2")
    open_order(symbol, "sell", -1, "60000", "0.001", "3")
    ladder = selectors.ladder_for(symbol, max_rows=11)
    assert len(ladder.rows) == 11
    assert ladder.hidden_orders == 1
    levels = [row.level for row in ladder.rows]
    assert levels == list(range(levels[0], levels[0] - 11, -1))
    assert 0 in levels and -1 in levels


def test_final_orders_are_not_on_the_ladder(symbol):
    order = open_order(symbol, "buy", -1, "59800", "0.001", "1")
    services.order_transition(order, OrderStatus.CANCELED, writer=WRITER)
    ladder = selectors.ladder_for(symbol)
    assert all(not row.buys and not row.sells for row in ladder.rows)


def test_pnl_series_replays_fill_record_exactly(symbol):
    buy1 = open_order(symbol, "buy", -1, "59800", "0.00083", "1")
    buy2 = open_order(symbol, "buy", -2, "59600", "0.001", "2")
    trade(symbol, buy1, "t1", "59800", "0.00083", "0.049634", "USDT", minutes=1)  # fee in quote
    trade(symbol, buy2, "t2", "59600", "0.001", "0.000001", "BTC", minutes=2)  # fee in base: 0.0596 USDT
    sell1 = open_order(symbol, "sell", -1, "60000", "0.00083", "3")
    sell2 = open_order(symbol, "sell", -2, "59800", "0.000999", "4")
    trade(symbol, sell1, "t3", "60000", "0.00083", "0.0498", "USDT", minutes=3)
    trade(symbol, None, "t4", "59900", "0.5", "1", "USDT", minutes=4)  # no ledger order: no slot, no PnL
    trade(symbol, sell2, "t5", "59800", "0.000999", "0.0597402", "USDT", minutes=5)

    series = selectors.pnl_series(symbol)

    assert [value for _, value in series] == [
        Decimal("-0.049634"),
        Decimal("-0.109234"),
        Decimal("0.006966"),  # slot -1: 49.8 - 49.634 - fees 0.049634 and 0.0498; slot -2 so far: -0.0596
        Decimal("0.1470258"),  # slot -2: 59.7402 - 59.5404 - 0.0596 - 0.0597402
    ]
    assert [at.minute for at, _ in series] == [1, 2, 3, 5]
    assert series[-1][1] == sum((s.realized_pnl for s in GridSlot.objects.filter(symbol=symbol)), Decimal(0))


def test_pnl_series_is_empty_without_fills(symbol):
    assert selectors.pnl_series(symbol) == []


def test_owner_is_the_lease_holder_else_the_last_writer(symbol):
    assert selectors.symbol_owner(symbol) is None
    open_order(symbol, "buy", -1, "59800", "0.001", "1")
    owner = selectors.symbol_owner(symbol)
    assert (owner.instance_id, owner.kind) == ("test-bot", "last writer")
    Symbol.objects.filter(pk=symbol.pk).update(owner_instance="bot-b", owner_token=7, owner_since=T0)
    symbol.refresh_from_db()
    owner = selectors.symbol_owner(symbol)
    assert (owner.instance_id, owner.kind, owner.token, owner.since) == ("bot-b", "lease owner", 7, T0)
    assert Order.objects.count() == 1

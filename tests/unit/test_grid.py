"""Grid math: exact Decimal expectations, no database."""
from __future__ import annotations

import random
from decimal import Decimal
from decimal import Decimal as D
from typing import Any, cast

import pytest

from trading import grid, pnl
from trading.grid import (
    BELOW_MIN_NOTIONAL,
    BELOW_MIN_ORDER_VALUE,
    BELOW_MIN_QTY,
    BUY,
    BUYS_PAUSED,
    MAX_GRID_LAYERS,
    ORDER_CAP,
    SELL,
    ZERO_AMOUNT,
    DesiredOrder,
    GridParams,
    Lattice,
    LiveOrderView,
    MarketRules,
    Side,
    Skipped,
    SlotView,
    anchor_for,
    buy_amount,
    buy_window,
    cleanup_candidates,
    desired_orders,
    round_amount_down,
    round_price,
    safety_buffer,
    sell_price,
    skip_reason,
    stale_buys,
)

# The worked example: anchor 3000.00, interval 2, windows 10, 30 USDT per buy, tick 0.01, step 0.001.
LAT = Lattice(anchor=D("3000.00"), interval=D("2"), tick=D("0.01"))
RULES = MarketRules(tick=D("0.01"), step=D("0.001"), min_notional=D("5"), min_qty=D("0.001"))


def params(**overrides) -> GridParams:
    values: dict[str, Any] = dict(
        interval=D("2"),
        order_quantity=D("30"),
        min_order_value=D("20"),
        buy_window_size=10,
        sell_window_size=10,
        order_cleanup_threshold=50,
        max_grid_layers=0,
    )
    values.update(overrides)
    return GridParams(**values)


def plan_for(price, slots=(), live=(), *, grid=None, rules=RULES, lattice=LAT, buys_paused=False):
    return desired_orders(
        grid or params(), rules, lattice, D(price), slots, live, buys_paused=buys_paused
    )


def rows(plan):
    return [(o.side, o.level, o.price, o.amount) for o in plan.orders]


def live_buys(levels, lattice=LAT):
    return [LiveOrderView(BUY, level, lattice.price(level), ref=f"b{level}") for level in levels]


# --------------------------------------------------------------------------- worked example


def test_worked_example_first_price_places_nine_buys_below_the_buffer():
    plan = plan_for("2999.3")
    expected = [(BUY, -k, D("3000.00") - 2 * k, D("0.010")) for k in range(1, 10)]
    assert rows(plan) == expected
    assert plan.orders[0] == DesiredOrder(BUY, -1, D("2998.00"), D("0.010"))
    assert plan.orders[-1] == DesiredOrder(BUY, -9, D("2982.00"), D("0.010"))
    assert [str(o.price) for o in plan.orders][:2] == ["2998.00", "2996.00"]
    assert plan.skipped == ()  # 3000 is not a candidate at all: it is above price - buffer


def test_worked_example_fill_creates_the_sell_in_the_same_call():
    # The buy at 2998 filled: the slot holds 0.010, the other eight buys are still live.
    plan = plan_for("2998.00", slots=[SlotView(-1, D("0.010"))], live=live_buys(range(-2, -10, -1)))
    assert rows(plan) == [
        (SELL, -1, D("3000.00"), D("0.010")),
        (BUY, -10, D("2980.00"), D("0.010")),  # the window followed the price down one level
    ]


def test_worked_example_sell_fill_empties_the_slot_and_rebuys_2998():
    live = live_buys(range(-2, -11, -1))
    plan = plan_for("3000.00", slots=[SlotView(-1, D("0"))], live=live)
    assert rows(plan) == [(BUY, -1, D("2998.00"), D("0.010"))]
    # Same when the caller simply omits empty slots.
    assert plan_for("3000.00", live=live) == plan


def round_trip(buy_fee="0", sell_fee="0", fee_currency="USDT"):
    book = pnl.apply_fill(pnl.SlotBook(), side="buy", price=D("2998.00"), amount=D("0.010"), fee=D(buy_fee),
                          fee_currency=fee_currency, base="ETH", quote="USDT")
    return book, pnl.apply_fill(book, side="sell", price=D("3000.00"), amount=book.holding, fee=D(sell_fee),
                                fee_currency="USDT", base="ETH", quote="USDT")


def test_worked_example_round_trip_pnl():
    assert round_trip()[1] == pnl.SlotBook(D("0"), D("0"), D("0.02"))
    # 0.1 % fee on each leg: 0.02998 + 0.03000.
    assert round_trip("0.02998", "0.03000")[1].realized == D("-0.03998")


def test_a_fee_in_base_shrinks_the_holding_and_is_charged_at_the_trade_price():
    bought, sold = round_trip("0.00001", fee_currency="ETH")
    assert bought == pnl.SlotBook(D("0.00999"), D("29.95002"), D("-0.02998"))
    # 0.00999 sold at 3000 = 29.97, less the cost 29.95002 and the buy's fee 0.02998.
    assert sold == pnl.SlotBook(D("0"), D("0"), D("-0.01"))


def test_sell_amount_is_what_the_slot_holds_rounded_down():
    # The exchange took its buy fee in base currency: 0.010 - 0.00001 is held.
    plan = plan_for("2998.00", slots=[SlotView(-1, D("0.00999"))], live=live_buys(range(-2, -11, -1)))
    assert rows(plan) == [(SELL, -1, D("3000.00"), D("0.009"))]


# --------------------------------------------------------------------------- rounding


@pytest.mark.parametrize(
    "price, tick, expected",
    [
        ("2998.005", "0.01", "2998.01"),  # tie: half up
        ("2998.0049999", "0.01", "2998.00"),
        ("2998", "0.01", "2998.00"),  # carries the tick's places
        ("100.25", "0.5", "100.5"),  # tie on a 0.5 tick
        ("100.24", "0.5", "100.0"),
        ("100.75", "0.5", "101.0"),
        ("12.5", "5", "15"),  # tie on a 5 tick
        ("12.4", "5", "10"),
        ("61234.7", "5", "61235"),
        ("0.123455", "0.00001", "0.12346"),
        ("0.1234549", "0.00001", "0.12345"),
        ("15", "1E+1", "20"),
        ("-2.5", "1", "-2"),  # ties go towards +infinity, also below zero
    ],
)
def test_round_price(price, tick, expected):
    result = round_price(D(price), D(tick))
    assert result == D(expected)
    assert str(result) == expected


@pytest.mark.parametrize(
    "amount, step, expected",
    [
        ("0.0109999", "0.001", "0.010"),
        ("0.010", "0.001", "0.010"),
        ("9.99", "5", "5"),
        ("5", "5", "5"),
        ("4.999", "5", "0"),
        ("1.5", "0.5", "1.5"),
        ("1.49", "0.5", "1.0"),
        ("0.00000999", "0.00001", "0.00000"),
        ("123.456789", "0.00001", "123.45678"),
    ],
)
def test_round_amount_down(amount, step, expected):
    result = round_amount_down(D(amount), D(step))
    assert result == D(expected)
    assert str(result) == expected


def test_rounding_refuses_floats_and_bad_units():
    with pytest.raises(TypeError):
        round_price(2998.0, D("0.01"))
    with pytest.raises(TypeError):
        round_amount_down(D("1"), 0.001)
    with pytest.raises(ValueError):
        round_price(D("1"), D("0"))
    with pytest.raises(ValueError):
        round_amount_down(D("-0.001"), D("0.001"))
    with pytest.raises(TypeError):
        GridParams(D("2"), 30.0, D("20"), 10, 10, 50)
    with pytest.raises(TypeError):
        SlotView(-1.0, D("1"))


def test_anchor_for_snaps_to_the_tick():
    assert anchor_for(D("2999.987"), D("0.01")) == D("2999.99")
    assert anchor_for(D("61232.4"), D("5")) == D("61230")
    assert str(anchor_for(D("3000"), D("0.01"))) == "3000.00"
    with pytest.raises(ValueError):
        anchor_for(D("0.004"), D("0.01"))


def test_buy_amount_rounds_down_never_up():
    assert buy_amount(D("30"), D("2998.00"), D("0.001")) == D("0.010")
    assert buy_amount(D("30"), D("1501"), D("0.001")) == D("0.019")  # 0.019986..., not 0.020
    assert buy_amount(D("30"), D("1500"), D("0.001")) == D("0.020")  # exact, stays
    assert buy_amount(D("30"), D("0.12345"), D("1")) == D("243")
    assert buy_amount(D("1"), D("2998"), D("0.001")) == D("0")


# --------------------------------------------------------------------------- lattice


def test_lattice_prices_and_levels():
    assert LAT.price(0) == D("3000.00")
    assert LAT.price(-1) == D("2998.00")
    assert LAT.price(5) == D("3010.00")
    assert LAT.price(-1499) == D("2.00")
    assert LAT.price(-1500) == D("0.00")
    assert LAT.level_of(D("2994")) == -3  # exactly on a level
    assert LAT.level_of(D("2999")) == 0  # half way: the upper level
    assert LAT.level_of(D("2997")) == -1  # half way, below the anchor: still the upper level
    assert LAT.level_of(D("2998.99")) == -1
    assert LAT.level_of(D("2999.01")) == 0
    assert LAT.level_of(D("1")) == -1499  # -1499.5 levels from the anchor: the upper one


def test_lattice_with_interval_off_the_tick():
    lattice = Lattice(D("100"), D("7"), D("5"))
    assert [lattice.price(k) for k in range(-2, 4)] == [D(p) for p in ("85", "95", "100", "105", "115", "120")]
    assert all(lattice.level_of(lattice.price(k)) == k for k in range(-12, 12))
    half = Lattice(D("100.5"), D("1.25"), D("0.5"))
    assert half.price(1) == D("102.0")  # 101.75 is half way between ticks: up
    assert half.price(-1) == D("99.5")  # 99.25: up
    assert all(half.level_of(half.price(k)) == k for k in range(-50, 50))


def test_lattice_validation():
    with pytest.raises(ValueError):
        Lattice(D("3000.005"), D("2"), D("0.01"))  # anchor off the tick
    with pytest.raises(ValueError):
        Lattice(D("3000"), D("2"), D("5"))  # interval below the tick: levels would collide
    with pytest.raises(TypeError):
        Lattice(3000.0, D("2"), D("0.01"))
    with pytest.raises(ValueError):
        desired_orders(params(interval=D("3")), RULES, LAT, D("2999"), [], [])
    with pytest.raises(ValueError):
        desired_orders(params(), MarketRules(D("0.1"), D("0.001")), LAT, D("2999"), [], [])
    with pytest.raises(ValueError):
        plan_for("2999", slots=[SlotView(-1, D("0.01")), SlotView(-1, D("0.02"))])


def test_lowest_level_above():
    assert LAT.lowest_level_above(D("2998.00")) == 0
    assert LAT.lowest_level_above(D("2997.99")) == -1
    lattice = Lattice(D("100"), D("7"), D("5"))
    assert lattice.lowest_level_above(D("105")) == 2  # 115
    assert lattice.lowest_level_above(D("104.99")) == 1  # 105


# --------------------------------------------------------------------------- windows


def test_buffer_is_a_tenth_of_the_interval():
    assert safety_buffer(D("2")) == D("0.2")
    assert safety_buffer(D("0.00037")) == D("0.000037")


def test_buy_window_price_exactly_on_a_level():
    assert buy_window(LAT, D("3000.00"), 10) == list(range(-1, -10, -1))


def test_buy_window_buffer_boundary():
    # price - buffer = 2998.00 exactly: 2998 is not strictly below it.
    assert buy_window(LAT, D("2998.20"), 10) == list(range(-2, -11, -1))
    assert buy_window(LAT, D("2998.21"), 10) == list(range(-1, -11, -1))


def test_buy_window_skips_non_positive_prices():
    lattice = Lattice(D("5.00"), D("2"), D("0.01"))
    assert buy_window(lattice, D("5.00"), 10) == [-1, -2]  # 3.00 and 1.00; -1.00 and below dropped
    plan = desired_orders(params(min_order_value=D("0")), RULES, lattice, D("5.00"), [], [])
    assert rows(plan) == [(BUY, -1, D("3.00"), D("10.000")), (BUY, -2, D("1.00"), D("30.000"))]


def test_buy_window_with_tick_five():
    lattice = Lattice(D("60000"), D("7"), D("5"))
    # 60000 is not below 60000 - 0.7; then 59995 (from 59993) and 59985 (from 59986).
    assert buy_window(lattice, D("60000"), 3) == [-1, -2]
    assert buy_window(lattice, D("60003"), 3) == [0, -1, -2]  # nearest level 0, and 60000 < 60002.3
    assert [lattice.price(k) for k in (-1, -2)] == [D("59995"), D("59985")]


def test_sell_price_is_one_level_up_or_the_lowest_resting_level():
    assert sell_price(LAT, -1, D("2998.00")) == D("3000.00")
    assert sell_price(LAT, -1, D("2999.79")) == D("3000.00")
    assert sell_price(LAT, -1, D("2999.80")) == D("3002.00")  # 3000 would not rest above price + buffer
    assert sell_price(LAT, -1, D("3000.00")) == D("3002.00")
    assert sell_price(LAT, -3, D("3001")) == D("3002.00")
    assert sell_price(LAT, -3, D("2900")) == D("2996.00")  # never below level + 1


def test_sell_window_takes_the_nearest_slots():
    slots = [SlotView(level, D("0.010")) for level in (-1, -2, -3, -4)]
    live = [LiveOrderView(SELL, -2, D("2998.00"), ref="s-2")]
    plan = plan_for("2990.00", slots=slots, live=live, grid=params(sell_window_size=2))
    sells = [r for r in rows(plan) if r[0] == SELL]
    assert sells == [(SELL, -4, D("2994.00"), D("0.010")), (SELL, -3, D("2996.00"), D("0.010"))]
    # A live sell inside the window counts towards it.
    live = [LiveOrderView(SELL, -4, D("2994.00"), ref="s-4")]
    plan = plan_for("2990.00", slots=slots, live=live, grid=params(sell_window_size=2))
    assert [r for r in rows(plan) if r[0] == SELL] == [(SELL, -3, D("2996.00"), D("0.010"))]
    # Slots holding inventory get no buy, in the window or not.
    assert {o.level for o in plan.orders if o.side == BUY}.isdisjoint({-1, -2, -3, -4})


def test_partly_filled_buy_gets_no_sell_and_no_second_buy():
    live = [LiveOrderView(BUY, -1, D("2998.00"), filled=D("0.004"), ref="b-1")]
    plan = plan_for("2998.50", slots=[SlotView(-1, D("0.004"))], live=live)
    assert all(o.level != -1 for o in plan.orders)
    assert [o.level for o in plan.orders] == list(range(-2, -11, -1))


# --------------------------------------------------------------------------- minimums


def test_min_order_value_skips_buys():
    plan = plan_for("2999.3", grid=params(order_quantity=D("10")))
    assert plan.orders == ()
    assert plan.skipped == tuple(Skipped(BUY, -k, BELOW_MIN_ORDER_VALUE) for k in range(1, 10))


def test_exchange_min_notional_skips_buys():
    rules = MarketRules(D("0.01"), D("0.001"), min_notional=D("10"))
    # 10 / 2998 = 0.0033... -> 0.003, and 0.003 * 2998 = 8.994 < 10.
    plan = plan_for("2999.3", grid=params(order_quantity=D("10"), min_order_value=D("0")), rules=rules)
    assert plan.orders == ()
    assert {s.reason for s in plan.skipped} == {BELOW_MIN_NOTIONAL}


def test_zero_amount_and_min_qty():
    assert skip_reason(D("2998"), D("0"), D("0"), RULES) == ZERO_AMOUNT
    min_qty_rules = MarketRules(D("0.01"), D("0.001"), min_qty=D("0.02"))
    assert skip_reason(D("2998"), D("0.010"), D("0"), min_qty_rules) == BELOW_MIN_QTY
    assert skip_reason(D("2998"), D("0.010"), D("29.98"), RULES) is None  # equal to the minimum is fine
    assert skip_reason(D("2998"), D("0.010"), D("29.99"), RULES) == BELOW_MIN_ORDER_VALUE
    plan = plan_for("2999.3", grid=params(order_quantity=D("1"), min_order_value=D("0")))
    assert plan.orders == ()
    assert {s.reason for s in plan.skipped} == {ZERO_AMOUNT}


def test_dust_slot_gets_no_sell_but_is_bought_again():
    # 0.006 * 3000 = 18 < 20: no sell. The slot counts as empty, so a buy tops it up.
    plan = plan_for("2999.3", slots=[SlotView(-1, D("0.0069"))])
    assert Skipped(SELL, -1, BELOW_MIN_ORDER_VALUE) in plan.skipped
    assert plan.orders[0] == DesiredOrder(BUY, -1, D("2998.00"), D("0.010"))
    assert all(o.side == BUY for o in plan.orders)


# --------------------------------------------------------------------------- caps and flags


def test_order_cap_limits_new_orders():
    plan = plan_for("2999.3", grid=params(order_cleanup_threshold=5))
    assert [o.level for o in plan.orders] == [-1, -2, -3, -4, -5]
    assert plan.skipped == tuple(Skipped(BUY, -k, ORDER_CAP) for k in range(6, 10))


def test_order_cap_gives_sells_priority():
    plan = plan_for(
        "2998.00",
        slots=[SlotView(-1, D("0.010"))],
        live=live_buys(range(-2, -10, -1)),
        grid=params(order_cleanup_threshold=9),
    )
    assert rows(plan) == [(SELL, -1, D("3000.00"), D("0.010"))]
    assert plan.skipped == (Skipped(BUY, -10, ORDER_CAP),)


def test_no_new_orders_at_or_above_the_cap():
    plan = plan_for("2900", live=live_buys(range(-100, -150, -1)))
    assert plan.orders == ()
    # Levels -51..-59: -50 (2900) is not below the buffer.
    assert plan.skipped == tuple(Skipped(BUY, -k, ORDER_CAP) for k in range(51, 60))


def test_max_grid_layers():
    plan = plan_for("2999.3", grid=params(max_grid_layers=3))
    assert [o.level for o in plan.orders] == [-1, -2, -3]
    assert {s.reason for s in plan.skipped} == {MAX_GRID_LAYERS}
    # Two slots already hold inventory: one buy left; their sells still go out, nearest first.
    slots = [SlotView(11, D("0.010")), SlotView(10, D("0.010"))]
    plan = plan_for("2999.3", slots=slots, grid=params(max_grid_layers=3))
    assert rows(plan) == [
        (SELL, 10, D("3022.00"), D("0.010")),
        (SELL, 11, D("3024.00"), D("0.010")),
        (BUY, -1, D("2998.00"), D("0.010")),
    ]
    # Live buys count as layers too: they may all fill.
    plan = plan_for("2999.3", live=live_buys([-1, -2, -3]), grid=params(max_grid_layers=3))
    assert plan.orders == ()


def test_buys_paused_still_sells():
    plan = plan_for("2998.00", slots=[SlotView(-1, D("0.010"))], buys_paused=True)
    assert rows(plan) == [(SELL, -1, D("3000.00"), D("0.010"))]
    assert plan.skipped == tuple(Skipped(BUY, -k, BUYS_PAUSED) for k in range(2, 11))


# --------------------------------------------------------------------------- stale buys and cleanup


def test_stale_buys_below_the_window():
    live = live_buys(range(-1, -10, -1)) + [LiveOrderView(SELL, 20, D("3042.00"))]
    # Price 3050: the window is levels 25..16, every old buy is below it.
    assert [o.level for o in stale_buys(live, LAT, D("3050"), 10)] == list(range(-9, 0))
    assert [o.level for o in stale_buys(live, LAT, D("3050"), 10, margin=20)] == [-9, -8, -7, -6, -5]
    assert stale_buys(live, LAT, D("2999.3"), 10) == []


def test_cleanup_below_threshold_does_nothing():
    live = live_buys(range(-1, -7, -1))
    assert cleanup_candidates(live, D("2999.3"), 7, 3) == []


def test_cleanup_cancels_farthest_buys_first_then_sells():
    sells = [LiveOrderView(SELL, 1, D("3004.00"), ref="s1"), LiveOrderView(SELL, 4, D("3010.00"), ref="s4")]
    live = live_buys(range(-1, -7, -1)) + sells
    picked = cleanup_candidates(live, D("2999.3"), 8, 3)
    assert [(o.side, o.price) for o in picked] == [(BUY, D("2988.00")), (BUY, D("2990.00")), (BUY, D("2992.00"))]
    picked = cleanup_candidates(live, D("2999.3"), 8, 7)
    assert [o.ref for o in picked] == ["b-6", "b-5", "b-4", "b-3", "b-2", "b-1", "s4"]


def test_cleanup_never_picks_partly_filled_orders():
    live = live_buys(range(-1, -3, -1)) + [LiveOrderView(BUY, -9, D("2982.00"), filled=D("0.001"), ref="p")]
    assert [o.ref for o in cleanup_candidates(live, D("2999.3"), 3, 2)] == ["b-2", "b-1"]


def test_cleanup_leaves_the_orders_the_grid_would_place_again():
    """At the cap, cancelling a buy the window wants only frees room for the same buy next tick
    (a cancel and an order per tick); the far sells, outside the sell window, can go for good."""
    lattice = Lattice(D("3000.00"), D("2"), D("0.01"))
    rules = MarketRules(D("0.01"), D("0.001"), D("5"), D("0.001"))
    params = GridParams(interval=D("2"), order_quantity=D("30"), min_order_value=D("5"), buy_window_size=3,
                        sell_window_size=2, order_cleanup_threshold=7)
    buys = live_buys(range(-1, -4, -1))
    sells = [LiveOrderView(SELL, level, lattice.price(level + 1), ref=f"s{level}") for level in (0, 1, 2, 3)]
    slots = [SlotView(level, D("0.01")) for level in (0, 1, 2, 3)]
    price = D("2999.3")
    assert [o.ref for o in cleanup_candidates(buys + sells, price, 7, 2)] == ["b-3", "b-2"]  # would churn
    # b-3 is below the window (level 0 holds, so the window's buys are at -1 and -2), s3 beyond the sells'
    picked = grid.lasting_cleanup(params, rules, lattice, price, slots, buys + sells, 2)
    assert [o.ref for o in picked] == ["b-3", "s3"]
    plan = grid.desired_orders(params, rules, lattice, price, slots, [o for o in buys + sells if o not in picked])
    assert plan.orders == ()  # nothing goes out again once s3 and s2 are cancelled


# --------------------------------------------------------------------------- invariants


CONFIGS = [
    # lattice, rules, order_quantity
    (Lattice(D("3000.00"), D("2"), D("0.01")), MarketRules(D("0.01"), D("0.001"), D("5"), D("0.001")), D("30")),
    (Lattice(D("100.5"), D("1.25"), D("0.5")), MarketRules(D("0.5"), D("0.1"), D("10")), D("50")),
    (Lattice(D("60000"), D("7"), D("5")), MarketRules(D("5"), D("0.00001"), D("5")), D("25")),
    (Lattice(D("0.12345"), D("0.00037"), D("0.00001")), MarketRules(D("0.00001"), D("1"), D("1"), D("10")), D("12")),
]


def random_case(rng: random.Random):
    lattice, rules, order_quantity = rng.choice(CONFIGS)
    grid = GridParams(
        interval=lattice.interval,
        order_quantity=order_quantity,
        min_order_value=D(rng.choice(["0", "5", "11"])),
        buy_window_size=rng.randint(1, 12),
        sell_window_size=rng.randint(1, 12),
        order_cleanup_threshold=rng.randint(1, 30),
        max_grid_layers=rng.choice([0, 0, 3, 8]),
    )
    # A price within +-30 intervals of the anchor, to 1/100 of an interval.
    price = lattice.anchor + lattice.interval * D(rng.randint(-3000, 3000)) / 100
    here = lattice.level_of(price)
    slots = []
    for level in rng.sample(range(here - 15, here + 15), rng.randint(0, 8)):
        held = buy_amount(order_quantity, lattice.price(level), rules.step) if lattice.price(level) > 0 else D(0)
        held = rng.choice([held, held / 3, D(0), held + rules.step])
        slots.append(SlotView(level, held))
    live = []
    for level in rng.sample(range(here - 20, here + 20), rng.randint(0, 10)):
        if lattice.price(level) > 0:
            side = cast(Side, rng.choice([BUY, SELL]))
            live.append(LiveOrderView(side, level, lattice.price(level + (side == SELL)), ref=f"{side}{level}"))
    return grid, rules, lattice, price, slots, live


def test_invariants_over_many_prices():
    rng = random.Random(20250117)
    placed = 0
    for _ in range(600):
        grid, rules, lattice, price, slots, live = random_case(rng)
        plan = desired_orders(grid, rules, lattice, price, slots, live)
        buffer = safety_buffer(lattice.interval)
        holdings = {s.level: s.holding for s in slots}
        live_levels = {o.level for o in live}
        minimum = max(grid.min_order_value, rules.min_notional)

        keys = [(o.side, o.level) for o in plan.orders]
        assert len(keys) == len(set(keys))
        assert len({o.level for o in plan.orders}) == len(plan.orders)  # one new order per slot
        assert len(plan.orders) <= max(0, grid.order_cleanup_threshold - len(live))
        assert not live_levels & {o.level for o in plan.orders}
        buys = [o for o in plan.orders if o.side == BUY]
        sells = [o for o in plan.orders if o.side == SELL]
        assert len(buys) <= grid.buy_window_size and len(sells) <= grid.sell_window_size
        assert plan.orders == tuple(sells + buys)  # sells first
        assert [o.level for o in buys] == sorted((o.level for o in buys), reverse=True)
        for order in plan.orders:
            assert order.amount > 0 and order.amount % rules.step == 0
            assert order.amount >= rules.min_qty
            assert order.price % lattice.tick == 0
            assert order.price * order.amount >= minimum
        for order in buys:
            assert 0 < order.price < price - buffer
            assert order.price == lattice.price(order.level)
            assert order.price * order.amount <= grid.order_quantity
        for order in sells:
            assert order.price > price + buffer
            assert order.price >= lattice.price(order.level + 1)
            assert order.amount <= holdings[order.level]
        if grid.max_grid_layers and buys:
            assert len(buys) + len(live_levels | {o.level for o in sells}) <= grid.max_grid_layers
        # Order of the inputs does not matter.
        again = desired_orders(grid, rules, lattice, price, list(reversed(slots)), list(reversed(live)))
        assert again == plan
        placed += len(plan.orders)
    assert placed > 500  # the loop exercised real plans, not only empty ones


# --------------------------------------------------------------------------- steady band
def _random_state(rng, lattice, low: Decimal, high: Decimal):
    """Live buys below `low`, live sells above `high`, holdings on some levels (as after a price
    path that filled nothing)."""
    top = lattice.level_of(low)
    live, slots = [], []
    for level in range(top - 8, top + 9):
        price = lattice.price(level)
        roll = rng.random()
        if price < low and roll < 0.4:
            live.append(grid.LiveOrderView(grid.BUY, level, price, ref=f"b{level}"))
        elif roll < 0.7 and level < top + 3:
            slots.append(grid.SlotView(level, Decimal(rng.choice(["0.001", "0.0005", "0.00001"]))))
            sell = lattice.price(level + 1 + rng.randrange(3))
            if sell > high and rng.random() < 0.6:
                live.append(grid.LiveOrderView(grid.SELL, level, sell, ref=f"s{level}"))
    return slots, live


def test_the_grid_decides_the_same_anywhere_inside_the_steady_band():
    rng = random.Random(7)
    rules = grid.MarketRules(tick=Decimal("0.01"), step=Decimal("0.00001"), min_notional=Decimal("5"))
    checked = 0
    for _ in range(400):
        anchor = Decimal(rng.randrange(2_000_000, 9_000_000)) / 100
        interval = Decimal(rng.randrange(500, 40_000)) / 100
        lattice = grid.Lattice(anchor, interval, rules.tick)
        price = anchor + Decimal(rng.randrange(-600_000, 600_000)) / 100
        low, high = grid.steady_band(lattice, price)
        assert low <= price <= high
        if low == high:
            continue
        other = low + (high - low) * Decimal(rng.randrange(1, 1000)) / 1000
        if not low < other < high:
            continue
        slots, live = _random_state(rng, lattice, min(price, other), max(price, other))
        params = grid.GridParams(interval=interval, order_quantity=Decimal("50"), min_order_value=Decimal("10"),
                                 buy_window_size=rng.randrange(1, 8), sell_window_size=rng.randrange(1, 8),
                                 order_cleanup_threshold=rng.randrange(3, 30))
        def decisions(p: Decimal) -> tuple:
            return (grid.desired_orders(params, rules, lattice, p, slots, live),  # noqa: B023 (called at once)
                    grid.stale_buys(live, lattice, p, params.buy_window_size, 2),  # noqa: B023
                    grid.cleanup_candidates(live, p, params.order_cleanup_threshold, 3),  # noqa: B023
                    grid.lasting_cleanup(params, rules, lattice, p, slots, live, 3))  # noqa: B023

        assert decisions(other) == decisions(price), (anchor, interval, price, other)
        checked += 1
    assert checked > 300


def test_the_steady_band_ends_where_the_grid_changes_its_mind():
    lattice = grid.Lattice(Decimal("60000"), Decimal("150"), Decimal("0.01"))
    # 60,015 is 60,000 + a tenth of the interval: above it, the level at 60,000 may hold a buy.
    assert grid.steady_band(lattice, Decimal("60070")) == (Decimal("60015"), Decimal("60075"))
    assert grid.steady_band(lattice, Decimal("60015")) == (Decimal("60015"), Decimal("60015"))
    params = grid.GridParams(interval=Decimal("150"), order_quantity=Decimal("50"), min_order_value=Decimal("10"),
                             buy_window_size=1, sell_window_size=1, order_cleanup_threshold=10)
    rules = grid.MarketRules(tick=Decimal("0.01"), step=Decimal("0.00001"))
    inside = grid.desired_orders(params, rules, lattice, Decimal("60015.01"), [], [])
    outside = grid.desired_orders(params, rules, lattice, Decimal("60015"), [], [])
    assert [o.level for o in inside.orders] == [0] and not outside.orders

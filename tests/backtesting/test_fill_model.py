"""The fill model of backtests and replays, on hand-made candles: the path through a candle, a
gap through several levels, a buy and its sell inside one candle, no look-ahead, post-only and
maker/taker fees."""
from __future__ import annotations

from decimal import Decimal as D
from pathlib import Path

import pytest

from backtesting.driver import Spec, run
from trading.models import Fill, GridSlot, Order
from trading.simulator import MarketSpec, SimConfig, SimError
from trading.simulator.matching import BUY, LIMIT, LIMIT_MAKER, SELL, Engine
from trading.simulator.pricepath import Candle, ReplayPath, candle_path

MINUTE = 60_000
T0 = 1_700_000_000_000 // MINUTE * MINUTE


def candle(i: int, o: str, h: str, low: str, c: str) -> Candle:
    return Candle(T0 + i * MINUTE, D(o), D(h), D(low), D(c), D("1"))


def engine(*candles: Candle, fee: str = "0.001") -> Engine:
    config = SimConfig(markets=[MarketSpec("BTC/USDT", price=D("100"), tick=D("0.01"), step=D("0.001"),
                                           min_notional=D("1"))],
                       balances={"USDT": D("10000"), "BTC": D("10")}, maker_fee=D(fee), taker_fee=D("0.002"))
    return Engine(config, clock=lambda: T0, path_factory=lambda spec, start: ReplayPath(list(candles), 100))


def test_the_path_goes_open_nearer_extreme_other_extreme_close():
    low_first = candle(0, "100", "104", "99", "103")
    assert [p for p, _ in candle_path(low_first, MINUTE)] == [D("100"), D("99"), D("104"), D("103")]
    high_first = candle(0, "100", "101", "95", "96")
    assert [p for p, _ in candle_path(high_first, MINUTE)] == [D("100"), D("101"), D("95"), D("96")]
    tie = candle(0, "100", "102", "98", "100")  # the high first on a tie: the grid's sells wait
    assert [p for p, _ in candle_path(tie, MINUTE)] == [D("100"), D("102"), D("98"), D("100")]
    times = [t for _, t in candle_path(tie, MINUTE)]
    assert times == [T0, T0 + 20_000, T0 + 40_000, T0 + MINUTE - 1]


def test_a_gap_fills_every_level_it_passes_in_the_order_it_passes_them_at_their_own_prices():
    sim = engine(candle(0, "100", "100", "100", "100"), candle(1, "94", "95", "92", "93"))
    for price in ("99", "97", "95", "93.5", "91"):
        sim.place_order("BTC/USDT", BUY, LIMIT_MAKER, D("1"), D(price))
    segment, trades = sim.step_point("BTC/USDT")  # 100 -> the next open, 94
    assert (segment.start, segment.end) == (D("100"), D("94"))
    assert [t.price for t in trades] == [D("99"), D("97"), D("95")]
    assert all(t.is_maker and t.commission == D("0.001") and t.commission_asset == "BTC" for t in trades)
    _, trades = sim.step_point("BTC/USDT")  # 94 -> 95, the high is nearer
    assert trades == []
    _, trades = sim.step_point("BTC/USDT")  # 95 -> 92
    assert [t.price for t in trades] == [D("93.5")]
    assert [o.price for o in sim.open_orders("BTC/USDT")] == [D("91")]  # never reached


def test_an_order_placed_inside_a_candle_cannot_fill_on_the_part_already_walked():
    sim = engine(candle(0, "100", "100", "100", "100"), candle(1, "100", "101", "95", "96"))
    sim.step_point("BTC/USDT")  # the open
    sim.step_point("BTC/USDT")  # the high, 101
    sim.step_point("BTC/USDT")  # the low, 95
    sim.place_order("BTC/USDT", SELL, LIMIT_MAKER, D("1"), D("100.5"))  # below the high already walked
    _, trades = sim.step_point("BTC/USDT")  # 95 -> the close, 96
    assert trades == []
    assert sim.candles("BTC/USDT")[-1].high == D("101")  # the candle did trade there, before the order


def test_post_only_refuses_a_crossing_order_and_a_plain_limit_takes_at_the_taker_fee():
    sim = engine(candle(0, "100", "100", "100", "100"))
    with pytest.raises(SimError) as refused:
        sim.place_order("BTC/USDT", BUY, LIMIT_MAKER, D("1"), D("100"))
    assert "would immediately match" in refused.value.msg
    _, trades = sim.place_order("BTC/USDT", BUY, LIMIT, D("1"), D("100"))
    assert [(t.is_maker, t.commission) for t in trades] == [(False, D("0.002"))]


def write_csv(path: Path, *rows: tuple[str, str, str, str]) -> Path:
    lines = ["open_time_ms,open,high,low,close,volume"]
    lines += [f"{T0 + i * MINUTE},{o},{h},{low},{c},1" for i, (o, h, low, c) in enumerate(rows)]
    path.write_text("\n".join(lines) + "\n")
    return path


GRID = {"price_interval": D("10"), "order_quantity": D("50"), "min_order_value": D("10"), "buy_window_size": 2,
        "sell_window_size": 1, "order_cleanup_threshold": 30, "cleanup_batch_size": 5}


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize(("rows", "round_trips"), [
    # low first: the buy at 990 fills on the way down, its sell at 1000 goes out at the low and
    # fills on the way up to the high, all in the second candle
    ([("1000", "1000", "1000", "1000"), ("1000", "1012", "989", "1005")], 1),
    # the high first: the sell is placed after the high has passed, and waits
    ([("1000", "1000", "1000", "1000"), ("1000", "1011", "989", "995")], 0),
], ids=["low-then-high", "high-then-low"])
def test_a_candle_that_touches_a_buy_and_its_sell(tmp_path, rows, round_trips):
    csv = write_csv(tmp_path / "candles.csv", *rows)
    results = run(Spec(klines=str(csv), symbol="BTC/USDT", params=dict(GRID), balances={"USDT": D("1000")}))
    buy = Order.objects.get(side="buy", level=-1)
    assert (buy.price, buy.status) == (D("990.00"), "filled")
    sell = Order.objects.get(side="sell", level=-1)
    assert sell.price == D("1000.00")
    assert sell.status == ("filled" if round_trips else "open")
    assert GridSlot.objects.get(level=-1).round_trips == round_trips
    assert results["round_trips"] == sum(s.round_trips for s in GridSlot.objects.all())
    fills = list(Fill.objects.filter(order__level=-1).order_by("traded_at").values_list("side", "traded_at"))
    assert [side for side, _ in fills] == ["buy", "sell"][: 1 + round_trips]
    # The buy filled at the low: its second point (20 s in) when nearer the open, else its third.
    assert int(fills[0][1].timestamp() * 1000) == T0 + MINUTE + 40_000 - (20_000 if round_trips else 0)


def test_a_range_starts_at_its_first_candle_and_reads_only_the_times_before(tmp_path):
    from backtesting import klines

    rows = [f"{T0 + i * MINUTE},100,101,99,100,1" for i in range(5)]
    rows[1] = f"{T0 + MINUTE},100,not-read,99,100,1"  # before the range: only its time is read
    path = tmp_path / "k.csv"
    path.write_text("open_time_ms,open,high,low,close,volume\n" + "\n".join(rows) + "\n")
    got = list(klines.candles(path, D("0.01"), start_ms=T0 + 2 * MINUTE, end_ms=T0 + 4 * MINUTE))
    assert [c.open_time for c in got] == [T0 + 2 * MINUTE, T0 + 3 * MINUTE]
    with pytest.raises(ValueError, match="k.csv:3: not a valid kline row"):
        list(klines.candles(path, D("0.01")))


def test_a_quiet_candle_walked_at_once_leaves_what_its_four_points_leave():
    rows = (candle(0, "100", "100", "100", "100"), candle(1, "100", "101", "99", "100.5"),
            candle(2, "100.5", "103", "100", "102"))
    walked, skipped = engine(*rows), engine(*rows)
    for sim in (walked, skipped):
        sim.place_order("BTC/USDT", BUY, LIMIT_MAKER, D("1"), D("98"))
        sim.place_order("BTC/USDT", SELL, LIMIT_MAKER, D("1"), D("102.5"))
    times: list[int] = []
    for _ in range(4):
        walked.step_point("BTC/USDT", on_time=times.append)
    seen: list[int] = []
    assert skipped.skip_quiet_candle("BTC/USDT", D("98.5"), D("101.5"), on_time=seen.append) == rows[1]
    assert seen == [times[-1]]
    assert skipped.candles("BTC/USDT") == walked.candles("BTC/USDT")
    assert skipped.price("BTC/USDT") == walked.price("BTC/USDT") == D("100.5")
    assert skipped.update_id() == walked.update_id()
    # The next candle reaches the sell at 102.5: it is not skipped, and walking it fills the sell.
    assert skipped.skip_quiet_candle("BTC/USDT", D("0.01"), D("1000"), on_time=seen.append) is None
    # Nor is a candle skipped that leaves the band, nor one part way through.
    assert skipped.skip_quiet_candle("BTC/USDT", D("100.4"), D("1000")) is None
    skipped.step_point("BTC/USDT")
    assert skipped.skip_quiet_candle("BTC/USDT", D("0.01"), D("1000")) is None
    fills = [t for _ in range(3) for t in skipped.step_point("BTC/USDT")[1]]
    assert [t.price for t in fills] == [D("102.5")]

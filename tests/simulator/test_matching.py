"""The matching engine on its own: determinism, partial fills, out-of-band actions, ledger."""
from __future__ import annotations

import threading
from decimal import Decimal

import pytest

from tests.simulator.conftest import btc_market, make_config
from trading.simulator import Balance, Engine, MarketSpec, SimConfig, SimError
from trading.simulator.config import market_for

D = Decimal


@pytest.fixture
def engine() -> Engine:
    return Engine(make_config(), clock=lambda: 1_700_000_000_000)


def test_default_config_serves_btc_and_eth_at_realistic_prices():
    engine = Engine()
    assert engine.prices() == {"BTCUSDT": D("60000"), "ETHUSDT": D("3000")}
    assert engine.balance("USDT") == Balance(D("100000"), D("0"))


def test_path_is_deterministic_per_seed():
    def path(seed: int) -> list[Decimal]:
        engine = Engine(make_config(seed=seed))
        engine.step(20)
        return [c.close for c in engine.candles("BTC/USDT")]

    assert path(7) == path(7)
    assert path(7) != path(8)
    assert len(set(path(7))) > 10


def test_adding_a_market_does_not_change_another_markets_path():
    alone = Engine(make_config(markets=[btc_market()]))
    both = Engine(make_config())
    alone.step(10)
    both.step(10)
    assert alone.price("BTCUSDT") == both.price("BTCUSDT")


def test_reset_replays_the_same_path(engine):
    engine.step(5)
    first = engine.prices()
    engine.place_order("BTCUSDT", "BUY", "LIMIT", D("0.001"), D("50000"), "qm-x")
    engine.reset()
    assert engine.ledger() == []
    assert engine.prices() == {"BTCUSDT": D("60000"), "ETHUSDT": D("3000")}
    engine.step(5)
    assert engine.prices() == first


def test_set_price_rounds_to_the_tick(engine):
    engine.set_price("BTC/USDT", D("61000.005"))
    assert engine.price("BTCUSDT") == D("61000.00")
    with pytest.raises(TypeError):
        engine.set_price("BTC/USDT", 61000.5)


def test_step_fills_orders_the_path_crosses():
    engine = Engine(make_config(markets=[btc_market(volatility=D("0.01"))], seed=3))
    engine.place_order("BTCUSDT", "BUY", "LIMIT", D("0.01"), D("59400"), "b")
    engine.place_order("BTCUSDT", "SELL", "LIMIT", D("0.01"), D("60600"), "s")
    fills = []
    for _ in range(200):
        fills += engine.step()
        if len(fills) == 2:
            break
    low = min(c.low for c in engine.candles("BTCUSDT"))
    high = max(c.high for c in engine.candles("BTCUSDT"))
    assert low <= D("59400") and high >= D("60600")
    assert sorted(t.side for t in fills) == ["BUY", "SELL"]
    assert all(t.is_maker for t in fills)


def test_partial_fills_a_fraction_per_price_move():
    engine = Engine(make_config(partial_fill_ratio=D("0.25")))
    order, _ = engine.place_order("BTCUSDT", "BUY", "LIMIT", D("0.004"), D("59000"), "qm-p")
    engine.set_price("BTCUSDT", D("58900"))
    assert engine.get_order("BTCUSDT", order.order_id).status == "PARTIALLY_FILLED"
    assert engine.get_order("BTCUSDT", order.order_id).executed_qty == D("0.001")
    engine.set_price("BTCUSDT", D("58950"))
    engine.set_price("BTCUSDT", D("59500"))  # above the order: no fill
    partial = engine.get_order("BTCUSDT", order.order_id)
    assert (partial.executed_qty, partial.cumm_quote_qty) == (D("0.002"), D("118.000"))
    canceled = engine.cancel_order("BTCUSDT", order.order_id)
    assert (canceled.status, canceled.executed_qty) == ("CANCELED", D("0.002"))
    assert engine.balance("USDT") == Balance(D("99882"), D("0"))
    assert engine.balance("BTC") == Balance(D("1.001998"), D("0"))
    assert [t.qty for t in engine.trades("BTCUSDT")] == [D("0.001"), D("0.001")]


def test_partial_fill_is_at_least_one_step():
    engine = Engine(make_config(partial_fill_ratio=D("0.1")))
    order, _ = engine.place_order("BTCUSDT", "SELL", "LIMIT", D("0.00015"), D("60100"), "s")
    engine.set_price("BTCUSDT", D("60100"))
    assert engine.get_order("BTCUSDT", order.order_id).executed_qty == D("0.00001")


def test_out_of_band_fill_and_cancel(engine):
    order, _ = engine.place_order("BTCUSDT", "SELL", "LIMIT", D("0.5"), D("61000"), "qm-o")
    (trade,) = engine.fill_order("BTC/USDT", client_order_id="qm-o", qty=D("0.2"))
    assert (trade.qty, trade.price, trade.commission) == (D("0.2"), D("61000"), D("12.2"))
    assert engine.get_order("BTCUSDT", order.order_id).status == "PARTIALLY_FILLED"
    engine.cancel_order("BTCUSDT", order.order_id)
    assert engine.balance("BTC") == Balance(D("0.8"), D("0"))
    assert engine.balance("USDT") == Balance(D("112187.8"), D("0"))
    with pytest.raises(SimError) as info:
        engine.fill_order("BTCUSDT", order.order_id)
    assert info.value.code == -2013
    engine.place_order("BTCUSDT", "BUY", "LIMIT", D("0.001"), D("50000"), "z")
    with pytest.raises(ValueError, match="multiple of 0.00001"):
        engine.fill_order("BTCUSDT", client_order_id="z", qty=D("0.000015"))


def test_ledger_rows(engine):
    engine.place_order("BTCUSDT", "BUY", "LIMIT_MAKER", D("0.001"), D("59000"), "qm-l1")
    engine.place_order("ETHUSDT", "BUY", "LIMIT", D("0.1"), D("2900"), None, foreign=True)
    rows = engine.ledger()
    assert rows[0] == {
        "clientOrderId": "qm-l1", "orderId": 1, "symbol": "BTCUSDT", "side": "BUY",
        "type": "LIMIT_MAKER", "price": "59000", "origQty": "0.001", "executedQty": "0",
        "cummulativeQuoteQty": "0", "status": "NEW", "time": 1_700_000_000_000,
        "updateTime": 1_700_000_000_000, "foreign": False}
    assert rows[1]["clientOrderId"] == "sim-auto-2"
    assert rows[1]["foreign"] is True
    assert [r["orderId"] for r in engine.ledger("ETH/USDT")] == [2]


def test_refused_orders_change_nothing(engine):
    before = (engine.balances(), engine.ledger())
    attempts = [
        ("NOPE", "BUY", "LIMIT", D("0.001"), D("59000"), -1121),
        ("BTCUSDT", "HOLD", "LIMIT", D("0.001"), D("59000"), -1117),
        ("BTCUSDT", "BUY", "MARKET", D("0.001"), D("59000"), -1116),
        ("BTCUSDT", "BUY", "LIMIT", D("0.001"), D("59000.001"), -1013),
        ("BTCUSDT", "BUY", "LIMIT", D("0.0000001"), D("59000"), -1013),
        ("BTCUSDT", "BUY", "LIMIT", D("0.00001"), D("59000"), -1013),
        ("BTCUSDT", "BUY", "LIMIT", D("5"), D("59000"), -2010),
    ]
    for symbol, side, kind, qty, price, code in attempts:
        with pytest.raises(SimError) as info:
            engine.place_order(symbol, side, kind, qty, price, "qm-bad")
        assert info.value.code == code
    assert (engine.balances(), engine.ledger()) == before


def test_concurrent_orders_keep_the_books_balanced():
    engine = Engine(make_config(balances={"USDT": D("500"), "BTC": D("0")}))
    accepted, refused = [], []

    def place(worker: int) -> None:
        for index in range(20):
            try:
                engine.place_order("BTCUSDT", "BUY", "LIMIT", D("0.0001"), D("50000"),
                                   f"w{worker}-{index}")
                accepted.append(1)
            except SimError as exc:
                assert exc.msg == "Account has insufficient balance for requested action."
                refused.append(1)

    threads = [threading.Thread(target=place, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert (len(accepted), len(refused)) == (100, 60)  # 100 x 5 USDT = the whole 500
    assert engine.balance("USDT") == Balance(D("0"), D("500"))
    assert len(engine.open_orders("BTCUSDT")) == 100


def test_market_spec_refuses_floats_and_bad_values():
    with pytest.raises(TypeError):
        MarketSpec("BTC/USDT", price=60000.0)
    with pytest.raises(ValueError, match="BASE/QUOTE"):
        MarketSpec("BTCUSDT", price=D("1"))
    with pytest.raises(ValueError, match="tick must be positive"):
        MarketSpec("BTC/USDT", price=D("1"), tick=D("0"))
    with pytest.raises(ValueError, match="duplicate markets"):
        SimConfig(markets=[btc_market(), btc_market()])


def test_market_for_derives_filters_from_the_price():
    spec = market_for("DOGE/USDT", "0.15")
    assert (spec.tick, spec.step, spec.market_id) == (D("1E-7"), D("1"), "DOGEUSDT")
    assert market_for("BTC/USDT").price == D("60000")

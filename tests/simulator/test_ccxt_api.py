"""Real ccxt.binance against the simulator over HTTP: the calls the gateway relies on."""
from __future__ import annotations

from decimal import Decimal

import pytest

D = Decimal


def balances(sim) -> dict[str, tuple[Decimal, Decimal]]:
    return {asset: (b.free, b.locked) for asset, b in sim.engine.balances().items()}


def test_load_markets_precision_and_limits(exchange):
    market = exchange.market("BTC/USDT")
    assert market["id"] == "BTCUSDT"
    assert (market["base"], market["quote"], market["spot"]) == ("BTC", "USDT", True)
    assert market["precision"]["price"] == 0.01
    assert market["precision"]["amount"] == 0.00001
    assert market["limits"]["amount"]["min"] == 0.00001
    assert market["limits"]["price"]["min"] == 0.01
    assert market["limits"]["cost"]["min"] == 5
    assert exchange.market("ETH/USDT")["precision"]["amount"] == 0.0001
    assert set(exchange.symbols) == {"BTC/USDT", "ETH/USDT"}


def test_fetch_ticker(exchange):
    ticker = exchange.fetch_ticker("BTC/USDT")
    assert ticker["symbol"] == "BTC/USDT"
    assert ticker["last"] == 60000
    assert ticker["bid"] == 59999.99
    assert ticker["ask"] == 60000.01
    assert ticker["info"]["lastPrice"] == "60000.00000000"


def test_ticker_follows_set_price(sim, exchange):
    sim.engine.set_price("BTC/USDT", D("61234.56"))
    assert exchange.fetch_ticker("BTC/USDT")["info"]["lastPrice"] == "61234.56000000"


def test_fetch_order_book(exchange):
    book = exchange.fetch_order_book("BTC/USDT", limit=5)
    assert book["bids"][0] == [59999.99, 1.0]
    assert book["asks"][0] == [60000.01, 1.0]
    assert len(book["bids"]) == len(book["asks"]) == 5
    assert book["bids"][4][0] == 59999.95
    assert book["nonce"] >= 1


def test_fetch_balance(exchange):
    balance = exchange.fetch_balance()
    assert balance["USDT"] == {"free": 100000.0, "used": 0.0, "total": 100000.0}
    assert balance["BTC"]["total"] == 1.0
    raw = {row["asset"]: row for row in balance["info"]["balances"]}
    assert raw["USDT"]["free"] == "100000.00000000"
    assert raw["ETH"]["free"] == "0.00000000"


def test_resting_limit_buy_locks_quote(sim, exchange):
    order = exchange.create_order("BTC/USDT", "limit", "buy", 0.01, 59000,
                                  {"newClientOrderId": "qm-buy-1"})
    assert order["status"] == "open"
    assert order["clientOrderId"] == "qm-buy-1"
    assert order["filled"] == 0
    assert order["info"]["price"] == "59000.00000000"
    assert balances(sim)["USDT"] == (D("99410"), D("590"))
    assert balances(sim)["BTC"] == (D("1"), D("0"))


def test_fetch_open_orders_and_order_by_id_and_client_id(exchange):
    placed = exchange.create_order("BTC/USDT", "limit", "buy", 0.002, 58000.5,
                                   {"newClientOrderId": "qm-q-1"})
    exchange.create_order("ETH/USDT", "limit", "buy", 0.01, 2900, {"newClientOrderId": "other"})
    open_orders = exchange.fetch_open_orders("BTC/USDT")
    assert [o["id"] for o in open_orders] == [placed["id"]]
    by_id = exchange.fetch_order(placed["id"], "BTC/USDT")
    assert (by_id["clientOrderId"], by_id["price"], by_id["amount"]) == ("qm-q-1", 58000.5, 0.002)
    by_client = exchange.fetch_order(None, "BTC/USDT", {"origClientOrderId": "qm-q-1"})
    assert by_client["id"] == placed["id"]
    by_client_alias = exchange.fetch_order(None, "BTC/USDT", {"clientOrderId": "qm-q-1"})
    assert by_client_alias["id"] == placed["id"]


def test_cancel_order_releases_funds(sim, exchange):
    placed = exchange.create_order("BTC/USDT", "limit", "buy", 0.01, 59000,
                                   {"newClientOrderId": "qm-c-1"})
    canceled = exchange.cancel_order(placed["id"], "BTC/USDT")
    assert canceled["status"] == "canceled"
    assert canceled["info"]["origClientOrderId"] == "qm-c-1"
    assert balances(sim)["USDT"] == (D("100000"), D("0"))
    assert exchange.fetch_open_orders("BTC/USDT") == []
    assert exchange.fetch_order(placed["id"], "BTC/USDT")["status"] == "canceled"


def test_cancel_by_client_id(sim, exchange):
    exchange.create_order("BTC/USDT", "limit", "sell", 0.5, 61000, {"newClientOrderId": "qm-s-1"})
    assert balances(sim)["BTC"] == (D("0.5"), D("0.5"))
    canceled = exchange.cancel_order(None, "BTC/USDT", {"origClientOrderId": "qm-s-1"})
    assert canceled["status"] == "canceled"
    assert balances(sim)["BTC"] == (D("1"), D("0"))


def test_resting_buy_fills_as_maker_when_price_falls(sim, exchange):
    placed = exchange.create_order("BTC/USDT", "limit", "buy", 0.01, 59000,
                                   {"newClientOrderId": "qm-f-1"})
    assert sim.engine.set_price("BTC/USDT", D("59000.01")) == []
    fills = sim.engine.set_price("BTC/USDT", D("58999.99"))
    assert [(t.qty, t.price, t.is_maker) for t in fills] == [(D("0.01"), D("59000"), True)]
    order = exchange.fetch_order(placed["id"], "BTC/USDT")
    assert (order["status"], order["filled"], order["average"]) == ("closed", 0.01, 59000)
    # fee 0.1 % of 0.01 BTC, charged in BTC
    assert balances(sim)["BTC"] == (D("1.00999"), D("0"))
    assert balances(sim)["USDT"] == (D("99410"), D("0"))
    trades = exchange.fetch_my_trades("BTC/USDT")
    assert len(trades) == 1
    trade = trades[0]
    assert (trade["side"], trade["takerOrMaker"], trade["order"]) == ("buy", "maker", placed["id"])
    assert trade["fee"] == {"currency": "BTC", "cost": 0.00001}
    assert trade["info"]["commission"] == "0.00001000"


def test_resting_sell_fills_when_price_rises(sim, exchange):
    exchange.create_order("BTC/USDT", "limit", "sell", 0.1, 60500, {"newClientOrderId": "qm-s-2"})
    sim.engine.set_price("BTC/USDT", D("60500"))
    # 6050 USDT received, fee 6.05 USDT
    assert balances(sim)["USDT"] == (D("106043.95"), D("0"))
    assert balances(sim)["BTC"] == (D("0.9"), D("0"))


def test_crossing_limit_fills_at_once_as_taker(sim, exchange):
    order = exchange.create_order("BTC/USDT", "limit", "sell", 0.01, 59000,
                                  {"newClientOrderId": "qm-t-1"})
    assert order["status"] == "closed"
    assert order["filled"] == 0.01
    assert order["info"]["fills"] == [{"price": "59000.00000000", "qty": "0.01000000",
                                       "commission": "0.59000000", "commissionAsset": "USDT",
                                       "tradeId": 1}]
    assert balances(sim)["USDT"] == (D("100589.41"), D("0"))
    assert balances(sim)["BTC"] == (D("0.99"), D("0"))
    assert exchange.fetch_my_trades("BTC/USDT")[0]["takerOrMaker"] == "taker"


def test_taker_and_maker_fees_are_configurable(make_sim):
    from tests.simulator.conftest import make_config
    from trading.exchange.local import ccxt_client

    sim = make_sim(make_config(maker_fee=D("0"), taker_fee=D("0.002")))
    client = ccxt_client(sim)
    client.create_order("BTC/USDT", "limit", "buy", 0.01, 60000, {"newClientOrderId": "t"})
    client.create_order("BTC/USDT", "limit", "sell", 0.01, 60100, {"newClientOrderId": "m"})
    sim.engine.set_price("BTC/USDT", D("60100"))
    assert sim.engine.balance("BTC").free == D("0.99998")  # 0.01 - 0.2 % taker fee
    assert sim.engine.balance("USDT").free == D("100001")  # -600 + 601, no maker fee


def test_post_only_rests_as_limit_maker(sim, exchange):
    order = exchange.create_order("BTC/USDT", "limit", "buy", 0.01, 59500,
                                  {"postOnly": True, "newClientOrderId": "qm-p-1"})
    assert order["status"] == "open"
    assert order["postOnly"] is True
    assert sim.engine.get_order("BTCUSDT", int(order["id"])).type == "LIMIT_MAKER"


def test_fetch_my_trades_from_id_since_and_limit(sim, exchange):
    for index, price in enumerate(("59900", "59800", "59700")):
        exchange.create_order("BTC/USDT", "limit", "buy", 0.001, int(price),
                              {"newClientOrderId": f"qm-m-{index}"})
    sim.engine.set_price("BTC/USDT", D("59000"))
    trades = exchange.fetch_my_trades("BTC/USDT")
    assert [t["id"] for t in trades] == ["1", "2", "3"]
    assert [t["id"] for t in exchange.fetch_my_trades("BTC/USDT", limit=2)] == ["2", "3"]
    from_two = exchange.fetch_my_trades("BTC/USDT", params={"fromId": 2})
    assert [t["id"] for t in from_two] == ["2", "3"]
    since = exchange.fetch_my_trades("BTC/USDT", since=trades[0]["timestamp"], limit=1)
    assert [t["id"] for t in since] == ["1"]
    assert exchange.fetch_my_trades("ETH/USDT") == []


def test_fetch_ohlcv_serves_the_recorded_path(sim, exchange):
    sim.engine.step(4)
    candles = exchange.fetch_ohlcv("BTC/USDT", "1m", limit=3)
    recorded = sim.engine.candles("BTC/USDT")
    assert len(recorded) == 5
    assert [c[0] for c in candles] == [c.open_time for c in recorded[-3:]]
    assert [c[4] for c in candles] == [float(c.close) for c in recorded[-3:]]
    assert candles[-1][4] == float(sim.engine.price("BTC/USDT"))
    assert candles[1][0] - candles[0][0] == 60_000
    first = exchange.fetch_ohlcv("BTC/USDT", "1m", since=recorded[0].open_time, limit=2)
    assert [c[0] for c in first] == [recorded[0].open_time, recorded[1].open_time]


def test_every_price_on_the_path_is_on_the_tick_grid(sim):
    sim.engine.step(50)
    for candle in sim.engine.candles("BTC/USDT"):
        for value in (candle.open, candle.high, candle.low, candle.close):
            assert isinstance(value, Decimal)
            assert value % D("0.01") == 0


@pytest.mark.parametrize("resp_type", ["ACK", "RESULT"])
def test_new_order_resp_types(sim, http, resp_type):
    status, _, body = http.signed("POST", "/api/v3/order", {
        "symbol": "BTCUSDT", "side": "BUY", "type": "LIMIT", "timeInForce": "GTC",
        "quantity": "0.001", "price": "50000", "newOrderRespType": resp_type})
    assert status == 200
    assert ("fills" in body, "status" in body) == (False, resp_type == "RESULT")


def test_client_ids_with_colons_and_slashes_survive_signing(sim, exchange):
    client_id = "qm:BTC/USDT:L-12:buy:0"
    placed = exchange.create_order("BTC/USDT", "limit", "buy", 0.001, 59000,
                                   {"newClientOrderId": client_id})
    assert placed["clientOrderId"] == client_id
    assert sim.engine.ledger()[0]["clientOrderId"] == client_id
    found = exchange.fetch_order(None, "BTC/USDT", {"origClientOrderId": client_id})
    assert found["id"] == placed["id"]
    assert exchange.cancel_order(None, "BTC/USDT", {"origClientOrderId": client_id})["status"] \
        == "canceled"

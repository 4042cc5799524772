"""Binance's limits as the simulator enforces them: ORDERS per 10 s (-1015), the 418 ban that
follows repeated 429s, no weight for accepted order requests, batched ticker weights, the
used-weight and order-count headers, and /sim/state counting what it refused."""
from __future__ import annotations

from decimal import Decimal

import ccxt
import pytest

from tests.simulator.conftest import make_config
from trading.exchange.local import ccxt_client

D = Decimal


def test_orders_past_the_10_second_limit_answer_minus_1015_through_ccxt(make_sim):
    sim = make_sim(make_config(order_limit_10s=3))
    sim.orders.clock = lambda: 1000.0  # one 10-second window
    client = ccxt_client(sim)
    client.load_markets()
    for i in range(3):
        client.create_order("BTC/USDT", "limit", "buy", "0.001", str(50000 + i))
    assert client.last_response_headers["X-MBX-ORDER-COUNT-10S"] == "3"
    with pytest.raises(ccxt.DDoSProtection, match="-1015"):
        client.create_order("BTC/USDT", "limit", "buy", "0.001", "49000")
    assert len(sim.engine.open_orders()) == 3
    state = sim.control.state({})
    assert (state["refusedOrders"], state["refused429"]) == (1, 1)
    sim.orders.clock = lambda: 1010.0  # the next window
    client.create_order("BTC/USDT", "limit", "buy", "0.001", "49000")


def test_a_filled_order_no_longer_counts(make_sim):
    sim = make_sim(make_config(order_limit_10s=2))
    sim.orders.clock = lambda: 2000.0
    client = ccxt_client(sim)
    client.load_markets()
    first = client.create_order("BTC/USDT", "limit", "buy", "0.001", "59000")
    client.create_order("BTC/USDT", "limit", "buy", "0.001", "58000")
    sim.engine.fill_order("BTC/USDT", order_id=int(first["id"]))
    client.create_order("BTC/USDT", "limit", "buy", "0.001", "57000")  # the fill gave its count back
    with pytest.raises(ccxt.DDoSProtection, match="-1015"):
        client.create_order("BTC/USDT", "limit", "buy", "0.001", "56000")


def test_three_minutes_of_429s_in_a_row_get_the_ip_banned_with_418(sim, http):
    sim.weights.reset(limit=5)
    for minute in (10, 11):
        sim.weights.clock = lambda minute=minute: minute * 60.0
        assert http.request("GET", "/api/v3/exchangeInfo")[0] == 429
    sim.weights.clock = lambda: 12 * 60.0 + 30
    status, headers, body = http.request("GET", "/api/v3/exchangeInfo")
    assert status == 429  # the third violated minute: this reply is the last 429
    status, headers, body = http.request("GET", "/api/v3/ping")
    assert (status, body["code"], headers["Retry-After"]) == (418, -1003, "120")
    assert "IP banned until" in body["msg"]
    sim.weights.clock = lambda: 12 * 60.0 + 30 + 121
    assert http.request("GET", "/api/v3/ping")[0] == 200
    assert sim.control.state({})["banned418"] == 1


def test_a_ban_through_ccxt_and_its_control(sim, http):
    client = ccxt_client(sim)
    client.load_markets()
    assert http.control("POST", "/sim/ban", {"seconds": 30})[0] == 200
    with pytest.raises(ccxt.DDoSProtection, match="418"):
        client.fetch_ticker("BTC/USDT")
    http.control("POST", "/sim/ban", {"seconds": 0})
    assert client.fetch_ticker("BTC/USDT")["last"] is not None


def test_accepted_order_requests_cost_no_weight_and_refused_ones_do(sim, http):
    sim.weights.clock = lambda: 3000.0
    client = ccxt_client(sim)
    client.load_markets()  # 20
    order = client.create_order("BTC/USDT", "limit", "buy", "0.001", "59000")
    client.cancel_order(order["id"], "BTC/USDT")
    assert sim.weights.used() == 20
    with pytest.raises(ccxt.InsufficientFunds):
        client.create_order("BTC/USDT", "limit", "buy", "100", "59000")
    assert sim.weights.used() == 21


@pytest.mark.parametrize("symbols, weight", [(1, 2), (20, 2), (21, 40), (101, 80)])
def test_batched_ticker_weight_follows_binance(sim, http, symbols, weight):
    from trading.simulator.binance_api import tickers_weight

    listed = "[" + ",".join(f'"S{i}"' for i in range(symbols)) + "]"
    assert tickers_weight({"symbols": listed}) == weight
    assert tickers_weight({}) == 80 and tickers_weight({"symbol": "BTCUSDT"}) == 2


def test_exchange_info_lists_the_order_limits(sim, http):
    status, _, body = http.request("GET", "/api/v3/exchangeInfo")
    limits = {(r["rateLimitType"], r["interval"], r["intervalNum"]): r["limit"] for r in body["rateLimits"]}
    assert limits[("REQUEST_WEIGHT", "MINUTE", 1)] == 6000
    assert limits[("ORDERS", "SECOND", 10)] == 100 and limits[("ORDERS", "DAY", 1)] == 200_000

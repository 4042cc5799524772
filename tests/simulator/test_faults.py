"""Injected faults: lost replies, error replies, hangs, latency and the request-weight limit."""
from __future__ import annotations

import time
from decimal import Decimal

import ccxt
import pytest

from trading.exchange.local import ccxt_client
from trading.simulator import Balance

D = Decimal


def test_dropped_reply_still_places_the_order(sim, exchange, http):
    status, _, _ = http.control("POST", "/sim/drop", {"count": 1})
    assert status == 200
    with pytest.raises(ccxt.NetworkError):
        exchange.create_order("BTC/USDT", "limit", "buy", 0.01, 59000,
                              {"newClientOrderId": "qm-lost-1"})
    _, _, ledger = http.control("GET", "/sim/ledger")
    assert [(row["clientOrderId"], row["status"]) for row in ledger] == [("qm-lost-1", "NEW")]
    assert sim.engine.balance("USDT") == Balance(free=D("99410"), locked=D("590"))
    found = exchange.fetch_order(None, "BTC/USDT", {"origClientOrderId": "qm-lost-1"})
    assert found["status"] == "open"
    with pytest.raises(ccxt.InvalidOrder, match="Duplicate order sent."):
        exchange.create_order("BTC/USDT", "limit", "buy", 0.01, 59000,
                              {"newClientOrderId": "qm-lost-1"})
    # only the next request was affected
    assert exchange.create_order("BTC/USDT", "limit", "buy", 0.01, 58000)["status"] == "open"


def test_dropped_reply_as_504(sim, exchange):
    sim.drop_next(mode="504")
    with pytest.raises(ccxt.RequestTimeout):
        exchange.create_order("BTC/USDT", "limit", "buy", 0.01, 59000,
                              {"newClientOrderId": "qm-504"})
    assert sim.engine.get_order("BTC/USDT", client_order_id="qm-504").status == "NEW"


def test_failure_reply_is_not_executed(sim, exchange, http):
    http.control("POST", "/sim/fail", {"path": "/api/v3/order", "method": "POST", "count": 2,
                                       "status": 503})
    for _ in range(2):
        with pytest.raises(ccxt.ExchangeNotAvailable):
            exchange.create_order("BTC/USDT", "limit", "buy", 0.01, 59000)
    assert sim.engine.ledger() == []
    assert sim.engine.balance("USDT").free == D("100000")
    assert exchange.create_order("BTC/USDT", "limit", "buy", 0.01, 59000)["status"] == "open"


def test_failure_with_binance_code_and_unknown_outcome(sim, exchange):
    sim.fail_next("/api/v3/order", "POST", status=400, code=-1007, execute=True,
                  msg="Timeout waiting for response from backend server. "
                      "Send status unknown; execution status unknown.")
    with pytest.raises(ccxt.RequestTimeout):
        exchange.create_order("BTC/USDT", "limit", "buy", 0.01, 59000,
                              {"newClientOrderId": "qm-1007"})
    assert [row["clientOrderId"] for row in sim.engine.ledger()] == ["qm-1007"]


def test_failure_only_hits_the_matching_path(sim, exchange):
    sim.fail_next("/api/v3/account", status=500, code=-1001, msg="Internal error; unable to "
                  "process your request. Please try again.")
    assert exchange.fetch_ticker("BTC/USDT")["last"] == 60000
    with pytest.raises(ccxt.OperationFailed):
        exchange.fetch_balance()
    assert exchange.fetch_balance()["USDT"]["free"] == 100000


def test_hang_longer_than_the_client_timeout(sim):
    client = ccxt_client(sim, timeout_ms=100)
    client.load_markets()
    sim.fail_next("/api/v3/order", "POST", hang_ms=400, execute=True)
    with pytest.raises(ccxt.RequestTimeout):
        client.create_order("BTC/USDT", "limit", "buy", 0.01, 59000, {"newClientOrderId": "qm-h"})
    assert sim.engine.get_order("BTCUSDT", client_order_id="qm-h").status == "NEW"


def test_latency(sim, exchange, http):
    http.control("POST", "/sim/latency", {"ms": 60, "path": "/api/v3/ticker/24hr"})
    started = time.perf_counter()
    exchange.fetch_ticker("BTC/USDT")
    assert time.perf_counter() - started >= 0.06
    started = time.perf_counter()
    exchange.fetch_order_book("BTC/USDT")
    assert time.perf_counter() - started < 0.06
    http.control("POST", "/sim/latency", {"ms": 0, "path": "/api/v3/ticker/24hr"})
    assert sim.faults.latency_ms("GET", "/api/v3/ticker/24hr") == 0


def test_weight_limit_answers_429_with_retry_after(sim, http):
    sim.weights.clock = lambda: 600.0  # a fixed instant at the start of a minute
    http.control("POST", "/sim/weight", {"limit": 25})
    statuses = []
    for _ in range(3):  # exchangeInfo weighs 20, depth (limit 100) 5
        status, headers, body = http.request("GET", "/api/v3/depth", query="symbol=BTCUSDT")
        statuses.append((status, headers.get("X-MBX-USED-WEIGHT-1M")))
    status, headers, body = http.request("GET", "/api/v3/exchangeInfo")
    assert statuses == [(200, "5"), (200, "10"), (200, "15")]
    assert status == 429
    assert body["code"] == -1003
    assert "current limit is 25 request weight per 1 MINUTE" in body["msg"]
    assert headers["Retry-After"] == "60"
    sim.weights.clock = lambda: 659.5
    status, headers, _ = http.request("GET", "/api/v3/exchangeInfo")
    assert (status, headers["Retry-After"]) == (429, "1")
    sim.weights.clock = lambda: 660.0  # the next minute
    status, headers, _ = http.request("GET", "/api/v3/exchangeInfo")
    assert (status, headers["X-MBX-USED-WEIGHT-1M"]) == (200, "20")


def test_weight_limit_through_ccxt(sim):
    sim.weights.clock = lambda: 1200.0
    sim.weights.reset(limit=24)
    client = ccxt_client(sim)
    client.load_markets()  # 20
    client.fetch_ticker("BTC/USDT")  # 2
    client.fetch_ticker("BTC/USDT")  # 2
    with pytest.raises(ccxt.DDoSProtection):
        client.fetch_ticker("BTC/USDT")
    before = sim.engine.balances()
    with pytest.raises(ccxt.DDoSProtection):
        client.create_order("BTC/USDT", "limit", "buy", 0.01, 59000)
    assert sim.engine.balances() == before
    assert sim.engine.ledger() == []


def test_control_endpoints_are_not_weighted(sim, http):
    sim.weights.clock = lambda: 60.0
    sim.weights.reset(limit=1)
    for _ in range(5):
        assert http.control("GET", "/sim/balances")[0] == 200


def test_reset_clears_faults_and_weight(sim, http):
    sim.weights.clock = lambda: 60.0
    sim.weights.reset(limit=20)
    http.request("GET", "/api/v3/exchangeInfo")
    sim.fail_next("/api/v3/ping")
    sim.set_latency(500)
    http.control("POST", "/sim/reset")
    assert http.request("GET", "/api/v3/ping")[:1] == (200,)
    assert sim.faults.latency_ms("GET", "/api/v3/ping") == 0

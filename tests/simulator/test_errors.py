"""Every refusal comes back through real ccxt as the expected exception with Binance's code,
and a refused request changes no balance and adds nothing to the ledger."""
from __future__ import annotations

import time
from decimal import Decimal

import ccxt
import pytest

from trading.exchange.local import ccxt_client

D = Decimal


@pytest.fixture
def unchanged(sim):
    """Asserts at the end of the test that balances and the ledger are as they were."""
    before = (sim.engine.balances(), sim.engine.ledger())
    yield
    assert (sim.engine.balances(), sim.engine.ledger()) == before


def raw_order(exchange, **overrides):
    params = {"symbol": "BTCUSDT", "side": "BUY", "type": "LIMIT", "timeInForce": "GTC",
              "quantity": "0.001", "price": "59000", "newClientOrderId": "qm-raw"}
    params.update(overrides)
    # ccxt's implicit API: signed and error-mapped by ccxt, but not rounded by it
    return exchange.private_post_order(params)


def test_insufficient_balance(exchange, http, unchanged):
    with pytest.raises(ccxt.InsufficientFunds, match="insufficient balance"):
        exchange.create_order("BTC/USDT", "limit", "buy", 2, 59000)
    with pytest.raises(ccxt.InsufficientFunds):
        exchange.create_order("BTC/USDT", "limit", "sell", 1.5, 61000)
    status, _, body = http.signed("POST", "/api/v3/order", {
        "symbol": "BTCUSDT", "side": "BUY", "type": "LIMIT", "timeInForce": "GTC",
        "quantity": "2", "price": "59000"})
    assert (status, body) == (400, {"code": -2010, "msg": "Account has insufficient balance "
                                                           "for requested action."})


def test_price_filter(exchange, unchanged):
    with pytest.raises(ccxt.InvalidOrder, match="Filter failure: PRICE_FILTER"):
        raw_order(exchange, price="59000.005")
    with pytest.raises(ccxt.InvalidOrder, match="-1013"):
        raw_order(exchange, price="2000000")


def test_lot_size_filter(exchange, unchanged):
    with pytest.raises(ccxt.InvalidOrder, match="Filter failure: LOT_SIZE"):
        raw_order(exchange, quantity="0.000015")
    with pytest.raises(ccxt.InvalidOrder, match="LOT_SIZE"):
        raw_order(exchange, quantity="9001")


def test_notional_filter(exchange, unchanged):
    with pytest.raises(ccxt.BadRequest, match="Filter failure: NOTIONAL"):
        exchange.create_order("BTC/USDT", "limit", "buy", 0.00008, 59000)  # 4.72 USDT


def test_invalid_symbol(exchange, unchanged):
    with pytest.raises(ccxt.BadSymbol, match="-1121"):
        exchange.public_get_ticker_24hr({"symbol": "NOPEUSDT"})
    with pytest.raises(ccxt.BadSymbol, match="Invalid symbol."):
        raw_order(exchange, symbol="NOPEUSDT")


def test_wrong_secret_is_an_invalid_signature(sim, unchanged):
    client = ccxt_client(sim, api_secret="not-the-secret")
    client.load_markets()
    with pytest.raises(ccxt.AuthenticationError, match="-1022"):
        client.fetch_balance()
    with pytest.raises(ccxt.AuthenticationError, match="Signature for this request is not valid"):
        client.create_order("BTC/USDT", "limit", "buy", 0.001, 59000)


def test_wrong_api_key(sim, unchanged):
    client = ccxt_client(sim, api_key="someone-else")
    client.load_markets()
    with pytest.raises(ccxt.AuthenticationError, match="-2015"):
        client.create_order("BTC/USDT", "limit", "buy", 0.001, 59000)


def test_missing_api_key(http, unchanged):
    status, _, body = http.signed("GET", "/api/v3/account", {}, key=None)
    assert (status, body) == (401, {"code": -2014, "msg": "API-key format invalid."})


def test_timestamp_outside_recv_window(sim, unchanged):
    client = ccxt_client(sim)
    client.load_markets()
    late = client.milliseconds() - 20_000  # ccxt sends recvWindow=10000
    client.milliseconds = lambda: late
    with pytest.raises(ccxt.InvalidNonce, match="-1021"):
        client.create_order("BTC/USDT", "limit", "buy", 0.001, 59000)


def test_timestamp_from_the_future(http, unchanged):
    status, _, body = http.signed("GET", "/api/v3/account", {},
                                  timestamp=http_now() + 5_000)
    assert (status, body["code"]) == (400, -1021)


def test_recv_window_cap(http):
    status, _, body = http.signed("GET", "/api/v3/account", {"recvWindow": "60001"})
    assert (status, body["code"]) == (400, -1131)


def test_duplicate_client_order_id_among_open_orders(sim, exchange):
    exchange.create_order("BTC/USDT", "limit", "buy", 0.001, 59000, {"newClientOrderId": "qm-d"})
    before = (sim.engine.balances(), len(sim.engine.ledger()))
    with pytest.raises(ccxt.InvalidOrder, match="Duplicate order sent.") as info:
        exchange.create_order("BTC/USDT", "limit", "buy", 0.001, 58000,
                              {"newClientOrderId": "qm-d"})
    assert not isinstance(info.value, ccxt.InsufficientFunds)
    assert (sim.engine.balances(), len(sim.engine.ledger())) == before


def test_client_order_id_of_a_finished_order_can_be_reused(sim, exchange):
    first = exchange.create_order("BTC/USDT", "limit", "buy", 0.001, 59000,
                                  {"newClientOrderId": "qm-r"})
    exchange.cancel_order(first["id"], "BTC/USDT")
    second = exchange.create_order("BTC/USDT", "limit", "buy", 0.001, 58000,
                                   {"newClientOrderId": "qm-r"})
    assert second["id"] != first["id"]
    found = exchange.fetch_order(None, "BTC/USDT", {"origClientOrderId": "qm-r"})
    assert (found["id"], found["status"]) == (second["id"], "open")


def test_post_only_that_would_take(exchange, unchanged):
    with pytest.raises(ccxt.OrderImmediatelyFillable, match="would immediately match and take"):
        exchange.create_order("BTC/USDT", "limit", "buy", 0.001, 60000, {"postOnly": True})
    with pytest.raises(ccxt.OrderImmediatelyFillable):
        exchange.create_order("BTC/USDT", "limit", "sell", 0.001, 59999.99, {"postOnly": True})


def test_unknown_order(exchange, unchanged):
    with pytest.raises(ccxt.OrderNotFound, match="-2013") as info:
        exchange.fetch_order("424242", "BTC/USDT")
    assert "Order does not exist." in str(info.value)
    with pytest.raises(ccxt.OrderNotFound, match="-2013"):
        exchange.fetch_order(None, "BTC/USDT", {"origClientOrderId": "never-sent"})
    with pytest.raises(ccxt.OrderNotFound, match="-2011") as info:
        exchange.cancel_order("424242", "BTC/USDT")
    assert "Unknown order sent." in str(info.value)


def test_cancel_of_a_finished_order_is_unknown(sim, exchange):
    placed = exchange.create_order("BTC/USDT", "limit", "buy", 0.001, 59000)
    exchange.cancel_order(placed["id"], "BTC/USDT")
    before = sim.engine.balances()
    with pytest.raises(ccxt.OrderNotFound, match="-2011"):
        exchange.cancel_order(placed["id"], "BTC/USDT")
    assert sim.engine.balances() == before


def test_order_of_another_symbol_is_not_found(exchange):
    placed = exchange.create_order("BTC/USDT", "limit", "buy", 0.001, 59000)
    with pytest.raises(ccxt.OrderNotFound):
        exchange.fetch_order(placed["id"], "ETH/USDT")


def test_bad_client_order_id_characters(exchange, unchanged):
    with pytest.raises(ccxt.BadRequest, match="-1100"):
        raw_order(exchange, newClientOrderId="has space")


def test_unsupported_time_in_force_and_type(exchange, unchanged):
    with pytest.raises(ccxt.BadRequest, match="-1115"):
        raw_order(exchange, timeInForce="IOC")
    with pytest.raises(ccxt.BadRequest, match="-1116"):
        raw_order(exchange, type="STOP_LOSS")
    with pytest.raises(ccxt.BadRequest, match="-1106"):
        raw_order(exchange, type="LIMIT_MAKER")
    with pytest.raises(ccxt.BadRequest, match="-1102"):
        exchange.private_post_order({"symbol": "BTCUSDT", "side": "BUY", "type": "LIMIT",
                                     "timeInForce": "GTC", "price": "59000"})


def test_malformed_numbers(exchange, unchanged):
    with pytest.raises(ccxt.BadRequest, match="-1100"):
        raw_order(exchange, price="1e5")
    with pytest.raises(ccxt.BadRequest, match="-1100"):
        raw_order(exchange, quantity="-1")


def http_now() -> int:
    return int(time.time() * 1000)

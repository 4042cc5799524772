"""The gateway over real ccxt and real HTTP against the simulator: exact Decimals, and every
failure surfacing as the gateway's own error class."""
from decimal import Decimal

import pytest

from tests.exchange.conftest import gateway
from trading.exchange import errors as xerr

D = Decimal


def place(gw, cid="qm-1-bm1-0", side="buy", amount="0.001", price="59000", post_only=True):
    return gw.create_limit_order(symbol="BTC/USDT", side=side, amount=D(amount), price=D(price),
                                 client_order_id=cid, post_only=post_only)


def test_market_rules_ticker_and_balances_are_exact(sim):
    gw = gateway(sim)
    rules = gw.market_rules("BTC/USDT")
    assert (rules.tick_size, rules.step_size, rules.min_notional, rules.market_id) == (D("0.01"), D("0.00001"), D("5"), "BTCUSDT")
    assert gw.fetch_ticker("BTC/USDT").last == D("60000")
    balances = gw.fetch_balances()
    assert balances["USDT"].free == D("10000") and balances["BTC"].free == D("1")


def test_order_lifecycle_with_our_client_id(sim):
    gw = gateway(sim)
    order = place(gw)
    assert (order.client_order_id, order.status, order.price, order.amount) == ("qm-1-bm1-0", "open", D("59000"), D("0.001"))
    assert gw.fetch_order_by_client_id("BTC/USDT", "qm-1-bm1-0").exchange_order_id == order.exchange_order_id
    assert gw.fetch_order("BTC/USDT", order.exchange_order_id).client_order_id == "qm-1-bm1-0"
    assert [o.client_order_id for o in gw.fetch_open_orders("BTC/USDT")] == ["qm-1-bm1-0"]
    assert gw.fetch_balances()["USDT"].locked == D("59.000")
    canceled = gw.cancel_order("BTC/USDT", exchange_order_id=order.exchange_order_id)
    assert canceled.status == "canceled"
    assert gw.fetch_open_orders("BTC/USDT") == []
    assert gw.fetch_balances()["USDT"].free == D("10000")


def test_fill_moves_balances_with_fees_and_reports_the_trade(sim):
    gw = gateway(sim)
    order = place(gw)
    sim.engine.set_price("BTC/USDT", D("58900"))
    trades = gw.fetch_my_trades("BTC/USDT")
    assert len(trades) == 1
    trade = trades[0]
    assert (trade.exchange_order_id, trade.side, trade.price, trade.amount) == (order.exchange_order_id, "buy", D("59000"), D("0.001"))
    assert (trade.fee, trade.fee_currency, trade.is_maker) == (D("0.000001"), "BTC", True)
    balances = gw.fetch_balances()
    assert balances["USDT"].total == D("10000") - D("59")
    assert balances["BTC"].total == D("1") + D("0.001") - D("0.000001")
    assert gw.fetch_order_by_client_id("BTC/USDT", "qm-1-bm1-0").status == "filled"


def test_insufficient_funds(sim):
    with pytest.raises(xerr.InsufficientFunds):
        place(gateway(sim), amount="1", price="59000")
    assert sim.engine.balance("USDT").free == D("10000")


def test_duplicate_client_id_among_open_orders(sim):
    gw = gateway(sim)
    place(gw)
    with pytest.raises(xerr.DuplicateClientOrderId):
        place(gw, price="58000")
    assert len(sim.engine.ledger()) == 1


def test_not_found(sim):
    gw = gateway(sim)
    assert gw.fetch_order_by_client_id("BTC/USDT", "qm-nothing") is None
    assert gw.cancel_order("BTC/USDT", client_order_id="qm-nothing") is None
    with pytest.raises(xerr.OrderNotFound):
        gw.fetch_order("BTC/USDT", "424242")


def test_post_only_that_would_take(sim):
    with pytest.raises(xerr.PostOnlyWouldTake):
        place(gateway(sim), price="61000", post_only=True)
    assert sim.engine.open_orders() == []


def test_rate_limit_carries_retry_after(sim):
    sim.fail_next(path="/api/v3/ticker/24hr", status=429, code=-1003, msg="Too much request weight used")
    gw = gateway(sim)
    with pytest.raises(xerr.RateLimited):
        gw.fetch_ticker("BTC/USDT")


def test_weight_limit_answers_429_with_retry_after(sim):
    gw = gateway(sim)
    sim.weights.limit = 5
    with pytest.raises(xerr.RateLimited) as excinfo:
        for _ in range(10):
            gw.fetch_ticker("BTC/USDT")
    assert excinfo.value.retry_after is not None and excinfo.value.retry_after > 0


@pytest.mark.parametrize("fault", [
    dict(status=503, msg="Service Unavailable"),
    dict(status=500, code=-1001, msg="Internal error; unable to process your request. Please try again."),
    dict(status=400, code=-1007, msg="Timeout waiting for response from backend server. Send status unknown; execution status unknown."),
])
def test_server_errors_are_ambiguous(sim, fault):
    sim.fail_next(path="/api/v3/order", method="POST", **fault)
    with pytest.raises(xerr.Ambiguous):
        place(gateway(sim))


def test_timeout_is_ambiguous(sim):
    sim.set_latency(1500, path="/api/v3/order")
    with pytest.raises(xerr.Ambiguous):
        place(gateway(sim, timeout_ms=300))


def test_bad_signature_is_an_authentication_failure(sim):
    with pytest.raises(xerr.AuthenticationFailed):
        gateway(sim, secret="wrong-secret").fetch_balances()


def test_dropped_reply_is_ambiguous_and_the_one_order_is_found_by_client_id(sim):
    gw = gateway(sim)
    sim.drop_next()  # the simulator accepts the order and closes the connection without a reply
    with pytest.raises(xerr.Ambiguous):
        place(gw)
    order = gw.fetch_order_by_client_id("BTC/USDT", "qm-1-bm1-0")
    assert order is not None and order.client_order_id == "qm-1-bm1-0" and order.status == "open"
    ledger = sim.engine.ledger()
    assert [o["clientOrderId"] for o in ledger] == ["qm-1-bm1-0"]
    assert gw.fetch_order_by_client_id("BTC/USDT", "qm-1-bm1-1") is None


def test_reply_without_an_id_raises_instead_of_passing(sim):
    # The order executes but the reply is a bare 200 `{}`: ccxt parses it into an order with id None.
    sim.fail_next(path="/api/v3/order", method="POST", status=200, msg="{}", execute=True)
    with pytest.raises(xerr.MalformedReply):
        place(gateway(sim))
    assert len(sim.engine.ledger()) == 1  # it did execute: MalformedReply is Ambiguous, resolved by query

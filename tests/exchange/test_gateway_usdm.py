"""The gateway on Binance USDⓈ-M futures: every call it makes, through real ccxt.binanceusdm over
HTTP against the simulator's fapi, and each futures error code as the gateway's own error class."""
from __future__ import annotations

from decimal import Decimal as D

import pytest

from tests.paper import futures_config
from trading.exchange import ExchangeGateway, build_exchange, errors
from trading.exchange.dialects import ccxt_id
from trading.simulator import SimulatorServer

DAY_MS = 86_400_000


class Clock:
    """The simulator's clock: real time, or shifted into the past while test code trades in-process."""

    def __init__(self):
        self.shift_ms = 0

    def __call__(self) -> int:
        import time

        return time.time_ns() // 1_000_000 - self.shift_ms


@pytest.fixture
def clock():
    return Clock()


@pytest.fixture
def fsim(clock):  # the shared fixture's account on a clock the test can shift
    with SimulatorServer(futures=futures_config(), clock=clock) as server:
        yield server


@pytest.fixture
def gw(fsim) -> ExchangeGateway:
    exchange = build_exchange("binanceusdm", api_key=fsim.api_key, secret=fsim.api_secret, base_url=fsim.base_url)
    return ExchangeGateway(exchange)


def buy(gw, price: str, cid: str, amount: str = "0.010", **kwargs):
    return gw.create_limit_order(symbol="BTC/USDT", side="buy", amount=D(amount), price=D(price), client_order_id=cid,
                                 post_only=True, **kwargs)


def test_an_account_on_binance_usdm_is_traded_by_binanceusdm():
    assert ccxt_id("binance", "usdm") == "binanceusdm" and ccxt_id("binance") == "binance"
    with pytest.raises(errors.UnsupportedExchange, match="on binance only"):
        ccxt_id("kraken", "usdm")


def test_markets_and_prices_keep_our_symbols(fsim, gw):
    listing = gw.market_rules("BTC/USDT")
    assert (listing.market_id, listing.tick_size, listing.step_size, listing.min_notional) == \
        ("BTCUSDT", D("0.1"), D("0.001"), D("100"))
    assert list(gw.load_markets()) == ["BTC/USDT"]
    assert gw.fetch_ticker("BTC/USDT").last == D("50000")
    fsim.futures.set_mark_basis(D("0.001"))
    assert gw.fetch_mark_price("BTC/USDT") == D("50050")
    assert gw.fetch_ohlcv("BTC/USDT", "1m", 3)[-1][4] == D("50000")


def test_orders_by_client_id_reduce_only_and_cancel(fsim, gw):
    order = buy(gw, "49000", "qm-1-B-0")
    assert (order.symbol, order.status, order.post_only, order.client_order_id) == ("BTC/USDT", "open", True, "qm-1-B-0")
    assert gw.fetch_order_by_client_id("BTC/USDT", "qm-1-B-0").exchange_order_id == order.exchange_order_id
    assert [o.client_order_id for o in gw.fetch_open_orders("BTC/USDT")] == ["qm-1-B-0"]
    fsim.futures.set_price("BTCUSDT", D("48990"))
    sell = gw.create_limit_order(symbol="BTC/USDT", side="sell", amount=D("0.010"), price=D("49500"),
                                 client_order_id="qm-1-S-0", post_only=True, reduce_only=True)
    assert fsim.futures.is_reduce_only(int(sell.exchange_order_id))
    canceled = gw.cancel_order("BTC/USDT", client_order_id="qm-1-S-0")
    assert (canceled.status, canceled.client_order_id) == ("canceled", "qm-1-S-0")
    assert gw.cancel_order("BTC/USDT", client_order_id="qm-1-S-0") is None  # gone: -2011
    assert gw.fetch_order_by_client_id("BTC/USDT", "qm-never") is None  # -2013


@pytest.mark.parametrize("setup, call, error", [
    (None, lambda gw: buy(gw, "50100", "c1"), errors.PostOnlyWouldTake),  # -5022
    (None, lambda gw: gw.create_limit_order(symbol="BTC/USDT", side="sell", amount=D("0.01"), price=D("51000"),
                                            client_order_id="c2", post_only=True, reduce_only=True),
     errors.ReduceOnlyRejected),  # -2022
    (None, lambda gw: buy(gw, "40000", "c3", "6.000"), errors.InsufficientFunds),  # -2019
    (None, lambda gw: buy(gw, "49000", "c4", "0.001"), errors.Rejected),  # -4164
    ("dup", lambda gw: buy(gw, "48000", "dup"), errors.DuplicateClientOrderId),  # -4116
    ("hedge", lambda gw: buy(gw, "49000", "c5"), errors.PositionModeMismatch),  # -4061
    (None, lambda gw: gw.create_limit_order(symbol="BTC/USDT", side="buy", amount=D("0.01"), price=D("52600"),
                                            client_order_id="c6", post_only=False), errors.Rejected),  # -4016
    (None, lambda gw: gw.create_limit_order(symbol="BTC/USDT", side="sell", amount=D("0.01"), price=D("47400"),
                                            client_order_id="c7", post_only=True), errors.Rejected),  # -4024
])
def test_futures_refusals_surface_as_the_gateways_error_classes(fsim, gw, setup, call, error):
    if setup == "dup":
        buy(gw, "49000", "dup")
    elif setup == "hedge":
        fsim.futures.set_hedge_mode(True)
    with pytest.raises(error) as excinfo:
        call(gw)
    assert type(excinfo.value) is error
    assert not [o for o in fsim.futures.open_orders() if o.client_order_id != "dup"]


def test_a_spot_gateway_refuses_futures_calls():
    sim = SimulatorServer().start()
    try:
        spot = ExchangeGateway(build_exchange("binance", api_key=sim.api_key, secret=sim.api_secret,
                                              base_url=sim.base_url))
        with pytest.raises(errors.UnsupportedExchange, match="trades spot"):
            spot.fetch_position("BTC/USDT")
        with pytest.raises(ValueError, match="cannot be reduce-only"):
            spot.create_limit_order(symbol="BTC/USDT", side="sell", amount=D("0.001"), price=D("70000"),
                                    client_order_id="x", post_only=True, reduce_only=True)
    finally:
        sim.stop()


def test_position_account_leverage_and_mode(fsim, gw):
    flat = gw.fetch_position("BTC/USDT")
    assert (flat.qty, flat.mark_price, flat.liquidation_price) == (0, D("50000"), None)
    assert gw.fetch_leverage("BTC/USDT") == (20, "cross")
    assert gw.set_leverage("BTC/USDT", 10) == 10
    gw.set_margin_mode("BTC/USDT", "isolated")
    gw.set_margin_mode("BTC/USDT", "isolated")  # already so: success
    assert gw.fetch_leverage("BTC/USDT") == (10, "isolated")
    assert gw.fetch_hedge_mode() is False
    buy(gw, "49000", "b1", "0.100")
    fsim.futures.set_price("BTCUSDT", D("48000"))
    position = gw.fetch_position("BTC/USDT")
    assert (position.qty, position.entry_price, position.mark_price) == (D("0.1"), D("49000"), D("48000"))
    assert position.unrealized_pnl == D("-100") and position.margin_mode == "isolated"
    assert position.liquidation_price == fsim.futures.position("BTCUSDT").liquidation_price
    account = gw.fetch_futures_account()
    view = fsim.futures.account()
    assert account.wallet_balance == view.wallet and account.unrealized_pnl == D("-100")
    assert account.margin_balance == view.margin_balance and account.available_balance == view.available
    with pytest.raises(errors.Rejected, match="-4048"):
        gw.set_margin_mode("BTC/USDT", "cross")


def test_funding_payments_and_trades_with_realised_pnl(fsim, gw):
    buy(gw, "49000", "b1", "0.100")
    fsim.futures.set_price("BTCUSDT", D("49000"))
    since = gw.exchange.milliseconds() - 3_600_000
    fsim.futures.step(8 * 60)
    (payment,) = gw.fetch_funding_payments("BTC/USDT", since_ms=since - 9 * 3_600_000)
    assert (payment.amount, payment.asset, payment.symbol) == (D("-0.49"), "USDT", "BTC/USDT")
    fsim.futures.set_price("BTCUSDT", D("48990"))
    gw.create_limit_order(symbol="BTC/USDT", side="sell", amount=D("0.100"), price=D("49100"), client_order_id="s1",
                          post_only=True, reduce_only=True)
    fsim.futures.set_price("BTCUSDT", D("49200"))
    trades = gw.fetch_my_trades("BTC/USDT", since_ms=since)
    assert [(t.side, t.realized_pnl) for t in trades] == [("buy", D("0")), ("sell", D("10"))]
    assert trades[1].fee == D("0.98200000") and trades[1].fee_currency == "USDT"


def test_trade_history_is_walked_in_seven_day_windows(fsim, gw, clock):
    engine = fsim.futures
    for days_ago, cid in ((20, "old"), (12, "mid"), (1, "new")):
        clock.shift_ms = days_ago * DAY_MS  # trade in-process at that time
        engine.set_price("BTCUSDT", D("50000"))
        engine.place_order("BTCUSDT", "BUY", "LIMIT", D("0.010"), D("49000"), cid, time_in_force="GTX")
        engine.set_price("BTCUSDT", D("48990"))
    clock.shift_ms = 0
    now = gw.exchange.milliseconds()
    trades = gw.fetch_my_trades("BTC/USDT", since_ms=now - 25 * DAY_MS)
    assert len(trades) == 3
    assert [round((now - t.timestamp_ms) / DAY_MS) for t in trades] == [20, 12, 1]
    # One request of ccxt's own answers only [since, since + 7 days]: the walk is what finds the rest.
    assert len(gw.exchange.fetch_my_trades("BTC/USDT:USDT", now - 25 * DAY_MS)) == 1

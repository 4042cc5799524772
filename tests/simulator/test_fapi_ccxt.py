"""The simulator's USDⓈ-M futures API through real ccxt.binanceusdm over HTTP: markets, orders and
their rules, positions at mark, settings, funding, liquidation and the 7-day trade window."""
from __future__ import annotations

from decimal import Decimal as D

import ccxt
import pytest

from tests.paper import futures_config
from trading import margin
from trading.simulator import SimulatorServer
from trading.simulator.futures import FuturesConfig, futures_market

SYMBOL = "BTC/USDT:USDT"


def usdm_client(sim: SimulatorServer) -> ccxt.binanceusdm:
    """ccxt.binanceusdm on the simulator's fapi, with the error table of the real fapi host."""
    client = ccxt.binanceusdm({
        "apiKey": sim.api_key, "secret": sim.api_secret, "enableRateLimit": False, "timeout": 5000,
        "options": {"fetchCurrencies": False, "fetchMargins": False, "recvWindow": 5000,
                    "warnOnFetchOpenOrdersWithoutSymbol": False},
    })
    client.urls["api"] = {section: sim.base_url + path for section, path in {
        "fapiPublic": "/fapi/v1", "fapiPublicV2": "/fapi/v2", "fapiPublicV3": "/fapi/v3",
        "fapiPrivate": "/fapi/v1", "fapiPrivateV2": "/fapi/v2", "fapiPrivateV3": "/fapi/v3"}.items()}
    linear = client.exceptions["linear"]
    client.exceptions["exact"] = {**client.exceptions["exact"], **linear.get("exact", {})}
    return client


def config(**overrides) -> FuturesConfig:
    """The shared futures account with ETH/USDT beside BTC/USDT."""
    markets = [*futures_config().markets, futures_market("ETH/USDT", price=D("3000"), volatility=D("0"))]
    return futures_config(markets=markets, **overrides)


@pytest.fixture
def fsim():
    with SimulatorServer(futures=config()) as server:
        yield server


@pytest.fixture
def usdm(fsim):
    client = usdm_client(fsim)
    client.load_markets()
    return client


def buy(usdm, price: str, amount: str = "0.010", **params):
    return usdm.create_order(SYMBOL, "limit", "buy", float(amount), float(price),
                             {"postOnly": True, **params})


def test_markets_load_in_one_request_and_parse_as_linear_swaps(fsim):
    client = usdm_client(fsim)
    before = dict(fsim.request_counts)
    client.load_markets()
    sent = {path: n - before.get(path, 0) for path, n in fsim.request_counts.items() if n != before.get(path, 0)}
    assert sent == {"/fapi/v1/exchangeInfo": 1}
    market = client.market(SYMBOL)
    assert (market["type"], market["linear"], market["settle"], market["id"]) == ("swap", True, "USDT", "BTCUSDT")
    assert market["precision"]["price"] == 0.1 and market["precision"]["amount"] == 0.001
    assert market["limits"]["cost"]["min"] == 100
    assert (market["maker"], market["taker"]) == (0.0002, 0.0005)


def test_post_only_rests_and_a_crossing_one_is_refused_unrecorded(fsim, usdm):
    order = buy(usdm, "49000", clientOrderId="g-1")
    assert (order["status"], order["postOnly"], order["reduceOnly"]) == ("open", True, False)
    assert fsim.futures.open_orders()[0].time_in_force == "GTX"
    with pytest.raises(ccxt.OrderNotFillable):
        buy(usdm, "50100", clientOrderId="g-2")
    with pytest.raises(ccxt.OrderNotFound):
        usdm.fetch_order(None, SYMBOL, {"origClientOrderId": "g-2"})
    assert buy(usdm, "49100", clientOrderId="g-2")["status"] == "open"  # the id is still free


def test_order_rules_answer_binance_codes(fsim, usdm):
    with pytest.raises(ccxt.InvalidOrder, match="-2022"):  # reduce-only while flat
        usdm.create_order(SYMBOL, "limit", "sell", 0.01, 51000, {"postOnly": True, "reduceOnly": True})
    with pytest.raises(ccxt.InvalidOrder, match="-4164"):  # under the 100 USDT notional
        buy(usdm, "49000", "0.001")
    with pytest.raises(ccxt.BadRequest, match="-4016"):  # above mark x 1.05 (it would also take)
        usdm.create_order(SYMBOL, "limit", "buy", 0.01, 52600)
    with pytest.raises(ccxt.BadRequest, match="-4024"):  # a sell below mark x 0.95
        usdm.create_order(SYMBOL, "limit", "sell", 0.01, 47400, {"postOnly": True})
    assert buy(usdm, "35000")["status"] == "open"  # a buy has no floor: a grid may rest far below
    buy(usdm, "49000", clientOrderId="dup")
    with pytest.raises(ccxt.InvalidOrder, match="-4116"):
        buy(usdm, "48000", clientOrderId="dup")
    with pytest.raises(ccxt.InsufficientFunds, match="-2019"):  # 10000 USDT at 20x holds 200000 of orders
        buy(usdm, "40000", "5.000")


def test_fills_build_a_position_valued_at_mark(fsim, usdm):
    buy(usdm, "49000")
    buy(usdm, "48000")
    fsim.futures.set_price("BTCUSDT", D("47900"))
    (position,) = usdm.fetch_positions([SYMBOL])
    assert (position["side"], position["contracts"]) == ("long", 0.02)
    assert position["entryPrice"] == 48500.0 and position["markPrice"] == 47900.0
    assert position["unrealizedPnl"] == pytest.approx(-12.0)
    fsim.futures.set_mark_basis(D("0.001"))  # mark moves, the last price does not
    (position,) = usdm.fetch_positions([SYMBOL])
    assert position["markPrice"] == 47947.9 and position["unrealizedPnl"] == pytest.approx(-11.042)
    balance = usdm.fetch_balance()["USDT"]
    account = fsim.futures.account()
    assert D(str(balance["total"])) == account.margin_balance.quantize(D("0.00000001"))
    # Maker fees (0.02 %) on 490 + 480 USDT came out of the wallet.
    assert account.wallet == D("10000") - D("0.098") - D("0.096")


def test_a_reduce_only_sell_closes_the_position_and_never_flips_it(fsim, usdm):
    buy(usdm, "49000")
    fsim.futures.set_price("BTCUSDT", D("48900"))
    sell = usdm.create_order(SYMBOL, "limit", "sell", 0.02, 49500, {"postOnly": True, "reduceOnly": True})
    assert sell["reduceOnly"] is True
    fsim.futures.set_price("BTCUSDT", D("49600"))
    assert usdm.fetch_positions([SYMBOL]) == []  # flat: ccxt drops the row
    closed = usdm.fetch_order(sell["id"], SYMBOL)
    assert (closed["status"], closed["filled"]) == ("expired", 0.01)  # the rest could only open a short
    trades = usdm.fetch_my_trades(SYMBOL)
    assert [t["side"] for t in trades] == ["buy", "sell"]
    assert D(trades[1]["info"]["realizedPnl"]) == D("5")  # (49500 - 49000) x 0.01, before fees


def test_settings_leverage_margin_type_and_position_mode(fsim, usdm):
    assert usdm.set_leverage(5, SYMBOL)["leverage"] == 5
    assert usdm.fetch_leverages([SYMBOL])[SYMBOL]["longLeverage"] == 5
    with pytest.raises(ccxt.BadRequest, match="-4028"):
        usdm.set_leverage(120, "ETH/USDT:USDT")  # ETH's first bracket allows 75
    usdm.set_margin_mode("isolated", SYMBOL)
    with pytest.raises(ccxt.MarginModeAlreadySet):
        usdm.set_margin_mode("isolated", SYMBOL)
    assert usdm.fetch_margin_mode(SYMBOL)["marginMode"] == "isolated"
    assert usdm.fetch_position_mode(SYMBOL)["hedged"] is False
    buy(usdm, "49000")
    fsim.futures.set_price("BTCUSDT", D("48900"))
    with pytest.raises(ccxt.OperationRejected, match="-4048"):
        usdm.set_margin_mode("cross", SYMBOL)
    with pytest.raises(ccxt.OperationRejected, match="-4068"):
        usdm.set_position_mode(True)


def test_hedge_mode_refuses_one_way_orders(fsim, usdm):
    fsim.futures.set_hedge_mode(True)
    assert usdm.fetch_position_mode(SYMBOL)["hedged"] is True
    with pytest.raises(ccxt.OperationRejected, match="-4061"):
        buy(usdm, "49000")


def test_funding_is_charged_at_each_eight_hour_boundary(fsim, usdm):
    buy(usdm, "49000", "0.100")
    fsim.futures.set_price("BTCUSDT", D("49000"))
    fsim.futures.set_funding_rate(D("0.0003"))
    before = fsim.futures.account().wallet
    fsim.futures.step(8 * 60)  # one-minute candles: at least one boundary
    rows = usdm.fetch_funding_history(SYMBOL)
    assert len(rows) == 1
    assert D(str(rows[0]["amount"])) == D("-1.47")  # 0.1 x 49000 x 0.0003, paid by the long
    assert fsim.futures.account().wallet == before - D("1.47")
    assert abs(rows[0]["timestamp"] - usdm.milliseconds()) < 60_000  # booked now, as trades are
    history = usdm.fetch_funding_rate_history(SYMBOL, limit=1)
    assert history[-1]["fundingRate"] == 0.0003
    assert history[-1]["timestamp"] % (8 * 3_600_000) == 0  # at the path's funding time
    premium = usdm.fetch_funding_rate(SYMBOL)
    assert premium["markPrice"] == 49000.0 and premium["fundingTimestamp"] > history[-1]["timestamp"]


def test_liquidation_at_mark_closes_the_position_where_the_formula_says(fsim, usdm):
    fsim.futures.set_wallet(D("300"))
    usdm.set_leverage(50, SYMBOL)
    buy(usdm, "49000", "0.200")  # 9800 USDT notional on 300 USDT
    fsim.futures.set_price("BTCUSDT", D("48990"))
    (position,) = usdm.fetch_positions([SYMBOL])
    wallet = fsim.futures.account().wallet
    tiers = fsim.futures.spec("BTCUSDT").brackets
    expected = margin.liquidation_price(wallet=wallet, qty=D("0.2"), entry=D("49000"), tiers=tiers)
    assert D(str(position["liquidationPrice"])) == expected.quantize(D("0.1"))
    fsim.futures.set_price("BTCUSDT", (expected + D("1")).quantize(D("0.1")))
    assert fsim.futures.position("BTCUSDT").qty == D("0.2")  # above LP: still open
    fsim.futures.set_price("BTCUSDT", (expected - D("1")).quantize(D("0.1")))
    assert usdm.fetch_positions([SYMBOL]) == []
    closing = fsim.futures.orders("BTCUSDT")[-1]
    assert closing.client_order_id.startswith("autoclose-") and closing.status == "FILLED"
    assert usdm.fetch_open_orders(SYMBOL) == []


def test_trade_history_answers_in_seven_day_windows(fsim, usdm):
    buy(usdm, "49000")
    fsim.futures.set_price("BTCUSDT", D("48900"))
    now = usdm.milliseconds()
    assert len(usdm.fetch_my_trades(SYMBOL, since=now - 3_600_000)) == 1
    assert usdm.fetch_my_trades(SYMBOL, since=now - 10 * 86_400_000) == []  # ccxt asks for [since, since + 7 d]
    with pytest.raises(ccxt.BadRequest, match="-1127"):
        usdm.fapiPrivateGetUserTrades({"symbol": "BTCUSDT", "startTime": now - 9 * 86_400_000, "endTime": now})


def test_orders_cost_no_weight_and_count_against_the_futures_limits(fsim, usdm):
    usdm.fetch_positions([SYMBOL])
    buy(usdm, "49000")
    headers = usdm.last_response_headers
    assert headers["X-MBX-ORDER-COUNT-10S"] == "1" and headers["X-MBX-ORDER-COUNT-1M"] == "1"
    used = int(headers["X-MBX-USED-WEIGHT-1M"])
    buy(usdm, "48000")
    assert int(usdm.last_response_headers["X-MBX-USED-WEIGHT-1M"]) == used
    assert usdm.fapiPublicGetExchangeInfo()["rateLimits"][0]["limit"] == 2400

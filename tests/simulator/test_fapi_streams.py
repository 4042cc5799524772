"""The simulator's USDⓈ-M futures streams through real ccxt.pro binanceusdm: tickers from the market
stream, and from the listen-key user stream the fills (with the exchange's realised PnL), order
changes and account updates; a listen key that ends takes its stream with it, and the next
subscription gets a new one."""
from __future__ import annotations

import asyncio
from decimal import Decimal as D

import ccxt
import pytest

from tests.paper import futures_config
from trading.exchange.dialects import BINANCE_USDM
from trading.exchange.gateway import build_exchange
from trading.simulator import SimulatorServer

SYMBOL = "BTC/USDT:USDT"


@pytest.fixture
def fsim():
    with SimulatorServer(futures=futures_config(), streams=True) as server:
        yield server


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, timeout=20))


def pro_client(sim):
    return build_exchange("binanceusdm", api_key=sim.api_key, secret=sim.api_secret, base_url=sim.base_url,
                          pro=True, ws_url=sim.streams.url)


async def until(watch, predicate):
    """Watch until an answer satisfies `predicate`; return that answer."""
    while True:
        answer = await watch()
        if predicate(answer):
            return answer


async def subscribed(sim, *, other_than: str | None = None) -> str:
    """Wait until a user stream is up on a key other than `other_than`; return that key."""
    while sim.futures.listen_key() in (None, other_than) or not sim.streams.state()["userSubscriptions"]:
        await asyncio.sleep(0.05)
    return sim.futures.listen_key()


def test_tickers_come_from_the_futures_market_stream(fsim):
    async def scenario():
        client = pro_client(fsim)
        try:
            await client.load_markets()
            first = await client.watch_tickers([SYMBOL])
            fsim.futures.set_price("BTCUSDT", D("50120"))
            moved = await until(lambda: client.watch_tickers([SYMBOL]), lambda t: SYMBOL in t and D(str(t[SYMBOL]["last"])) == D("50120"))
            return first, moved
        finally:
            await client.close()

    first, moved = run(scenario())
    assert D(str(first[SYMBOL]["last"])) == D("50000") and D(str(moved[SYMBOL]["close"])) == D("50120")


def test_a_fill_arrives_with_its_realised_pnl_and_the_position_update(fsim):
    engine = fsim.futures

    async def scenario():
        client = pro_client(fsim)
        try:
            await client.load_markets()
            trades = asyncio.ensure_future(until(client.watch_my_trades, lambda ts: any(t["side"] == "sell" for t in ts)))
            balances = asyncio.ensure_future(until(client.watch_balance, lambda b: b.get("USDT", {}).get("total")))
            await subscribed(fsim)
            engine.place_order("BTCUSDT", "BUY", "LIMIT", D("0.010"), D("49900"), "qm-buy-1", time_in_force="GTX")
            engine.set_price("BTCUSDT", D("49800"))
            engine.place_order("BTCUSDT", "SELL", "LIMIT", D("0.010"), D("50000"), "qm-sell-1", time_in_force="GTX",
                               reduce_only=True)
            engine.set_price("BTCUSDT", D("50100"))
            return await trades, await balances
        finally:
            await client.close()

    trades, balance = run(scenario())
    sell = next(t for t in trades if t["side"] == "sell")
    assert (D(str(sell["price"])), D(str(sell["amount"])), D(sell["info"]["rp"]), sell["info"]["R"]) == \
        (D("50000"), D("0.01"), D("1"), True)
    assert sell["fee"]["currency"] == "USDT" and sell["takerOrMaker"] == "maker"
    assert D(str(balance["USDT"]["total"])) == engine.account().wallet


def test_a_closed_listen_key_ends_the_stream_and_the_next_subscription_gets_a_new_key(fsim):
    engine = fsim.futures

    async def scenario():
        client = pro_client(fsim)
        try:
            await client.load_markets()
            watch = asyncio.ensure_future(client.watch_orders())
            first_key = await subscribed(fsim)
            fsim.streams.control("terminate", {})
            with pytest.raises(ccxt.NetworkError):
                await watch  # the server closed the stream on the ended key
            BINANCE_USDM.forget_user_stream(client)
            again = asyncio.ensure_future(client.watch_orders())
            await subscribed(fsim, other_than=first_key)
            engine.place_order("BTCUSDT", "BUY", "LIMIT", D("0.010"), D("49900"), "qm-buy-2", time_in_force="GTX")
            orders = await again
            return first_key, engine.listen_key(), orders
        finally:
            await client.close()

    first_key, second_key, orders = run(scenario())
    assert first_key and second_key and first_key != second_key
    assert [o["clientOrderId"] for o in orders] == ["qm-buy-2"]


def test_a_connection_on_a_key_that_is_not_the_accounts_is_refused(fsim):
    import urllib.error
    import urllib.request

    url = fsim.streams.url.replace("ws://", "http://") + "/fstream/private/ws?listenKey=nope"
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(url, timeout=5)
    assert refused.value.code == 400 and b"-1125" in refused.value.read()

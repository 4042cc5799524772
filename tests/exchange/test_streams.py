"""Prices and fills from the exchange's WebSocket streams, through real ccxt.pro against the
simulator's streams, in a real `Bot` (its symbol threads and its account session): a fill's sell
goes out on the fill event, not at the next poll; a dropped stream loses no fill and doubles no
order; a swallowed event is found by the REST check; a stalled stream hands over to REST."""
from __future__ import annotations

import threading
from collections import Counter
from contextlib import contextmanager
from decimal import Decimal

import pytest

from locking.nop import NopLock
from tests.procs import wait_for
from trading.engine import STREAM_SAFETY_SECONDS
from trading.exchange.session import session_for
from trading.models import BotInstance, ExchangeAccount, Fill, Order, Symbol
from trading.runner import Bot, BotOptions
from trading.simulator import MarketSpec, SimConfig, SimulatorServer

pytestmark = pytest.mark.django_db(transaction=True)
D = Decimal
SLOW_TICK = 10.0  # seconds: only an event can get a sell out within one second


@pytest.fixture
def sim():
    config = SimConfig(markets=[MarketSpec("BTC/USDT", price=D("60000"), tick=D("0.01"), step=D("0.00001"))],
                       balances={"USDT": D("100000"), "BTC": D("0")}, seed=3)  # Binance's default limits
    with SimulatorServer(config, streams=True) as server:
        yield server


@pytest.fixture
def symbol(sim):
    account = ExchangeAccount.objects.create(name="paper", exchange_id="binance", paper=True, base_url=sim.base_url)
    return Symbol.objects.create(account=account, symbol="BTC/USDT", price_interval=D("200"), order_quantity=D("50"),
                                 min_order_value=D("5"), buy_window_size=3, sell_window_size=3, position_safety_check=0,
                                 reconcile_interval=3600)


@contextmanager
def bot(symbol, *, streams=True, tick=SLOW_TICK, heartbeat=5.0):
    lines: list[str] = []
    subject = Bot([Symbol.objects.select_related("account").get(pk=symbol.pk)], NopLock(),
                  BotOptions(instance_id="stream-bot", tick_interval=tick, status_interval=3600, streams=streams,
                             reconcile=False, heartbeat_interval=heartbeat), out=lines.append)
    thread = threading.Thread(target=subject.run_until_stopped, daemon=True)
    thread.start()
    try:
        wait_for(lambda: Order.objects.filter(symbol=symbol, side="buy", status="open").count() >= 2, what="first buys")
        if streams:
            wait_for(lambda: subject.runs[symbol.pk].engine is not None and subject.runs[symbol.pk].engine.feed is not None
                     and subject.runs[symbol.pk].engine.feed.healthy(), what="healthy streams")
        yield subject, lines
    finally:
        subject.stop()
        thread.join(timeout=30)


def after_a_tick(subject, symbol):
    run = subject.runs[symbol.pk]
    ticks = run.ticks
    wait_for(lambda: run.ticks > ticks, timeout=SLOW_TICK + 5, what="a tick")


def sell_delay_ms(sim, level_price) -> int:
    """Milliseconds from the buy's fill at `level_price` to its sell's arrival at the exchange."""
    trade = next(t for t in sim.engine.trades() if t.price == level_price and t.side == "BUY")
    sell = next(o for o in sim.engine.orders() if o.side == "SELL")
    return sell.time - trade.time


def exchange_has_a_sell(sim):
    return any(o.side == "SELL" for o in sim.engine.orders())


def no_duplicates(sim):
    ids = Counter(o.client_order_id for o in sim.engine.orders())
    live = Counter((o.side, o.price) for o in sim.engine.open_orders())
    return max(ids.values()) == 1 and max(live.values()) == 1


@pytest.mark.slow
def test_a_fill_event_gets_its_sell_out_within_a_second(sim, symbol):
    with bot(symbol) as (subject, lines):
        after_a_tick(subject, symbol)
        sim.engine.set_price("BTC/USDT", D("59800"))
        wait_for(lambda: exchange_has_a_sell(sim), timeout=5, what="the sell")
    assert sell_delay_ms(sim, D("59800")) < 1000
    assert any("from the exchange's streams" in line for line in lines)


@pytest.mark.slow
def test_control_polling_gets_the_sell_out_only_at_the_next_tick(sim, symbol):
    with bot(symbol, streams=False) as (subject, lines):
        after_a_tick(subject, symbol)
        sim.engine.set_price("BTC/USDT", D("59800"))
        wait_for(lambda: exchange_has_a_sell(sim), timeout=SLOW_TICK + 10, what="the sell")
    assert sell_delay_ms(sim, D("59800")) > 1000


@pytest.mark.slow
def test_a_stream_dropped_while_fills_happen_loses_no_fill_and_doubles_no_order(sim, symbol):
    with bot(symbol, tick=1.0) as (subject, lines):
        streams = session_for(subject.symbols[0].account).streams
        generation = streams.generation
        sim.streams.control("drop", {})
        sim.engine.set_price("BTC/USDT", D("59600"))  # two buys fill while nobody listens
        wait_for(lambda: streams.generation > generation, timeout=30, what="streams back")
        wait_for(lambda: Fill.objects.filter(symbol=symbol, side="buy").count() == 2, timeout=15, what="both fills")
        wait_for(lambda: Order.objects.filter(symbol=symbol, side="sell", status="open").count() == 2, timeout=15,
                 what="both sells")
    assert no_duplicates(sim)
    assert streams.reconnects >= 1


@pytest.mark.slow
def test_a_swallowed_fill_event_is_found_by_the_rest_check(sim, symbol):
    with bot(symbol, tick=1.0) as (subject, lines):
        engine = subject.runs[symbol.pk].engine
        wait_for(lambda: engine.feed_generation == engine.feed.generation, what="the resync after connecting")
        after_a_tick(subject, symbol)  # and that resync's REST requests are over
        sim.streams.control("swallow", {"count": 1, "match": {"e": "executionReport", "x": "TRADE"}})  # the buy's fill
        sim.engine.set_price("BTC/USDT", D("59800"))
        sim.engine.set_price("BTC/USDT", D("59900"))
        wait_for(lambda: sim.streams.swallowed == 1, what="the event swallowed")
        assert not Fill.objects.filter(symbol=symbol).exists()
        engine.next_safety_check = 0.0  # the periodic REST check comes due (every STREAM_SAFETY_SECONDS)
        wait_for(lambda: Fill.objects.filter(symbol=symbol, side="buy").count() == 1, timeout=10, what="the fill")
        wait_for(lambda: Order.objects.filter(symbol=symbol, side="sell", status="open").exists(), timeout=10,
                 what="its sell")
    assert STREAM_SAFETY_SECONDS <= 120 and no_duplicates(sim)


@pytest.mark.slow
def test_a_stalled_stream_is_detected_and_rest_takes_over(sim, symbol, admin_client):
    with bot(symbol, tick=1.0, heartbeat=0.2) as (subject, lines):
        feed = subject.runs[symbol.pk].engine.feed
        instance = BotInstance.objects.get(instance_id="stream-bot")
        wait_for(lambda: BotInstance.objects.get(pk=instance.pk).feed == "paper: streams", what="the heartbeat")
        assert 'data-feed-down="false"' in admin_client.get("/admin/dashboard/").content.decode()
        sim.streams.control("stall", {"on": True})
        wait_for(lambda: not feed.healthy(), timeout=15, what="the stall noticed")
        wait_for(lambda: "streams down" in BotInstance.objects.get(pk=instance.pk).feed, what="the heartbeat")
        page = admin_client.get("/admin/dashboard/").content.decode()
        assert 'data-feed-down="true"' in page and "polling by REST" in page
        assert 'quantmesh_streams_up{account="paper"} 0.0' in admin_client.get("/metrics").content.decode()
        sim.engine.set_price("BTC/USDT", D("59800"))  # the fill is polled by REST now
        wait_for(lambda: Order.objects.filter(symbol=symbol, side="sell", status="open").exists(), timeout=15,
                 what="the sell, by REST")
        subject.print_status()
        assert any("streams down" in line for line in lines)
        sim.streams.control("stall", {"on": False})
        wait_for(lambda: feed.healthy(), timeout=15, what="streams healthy again")
    assert sim.control.state({})["refused429"] == 0 and no_duplicates(sim)


@pytest.mark.parametrize("streams", [True, False], ids=["streamed-balance", "control-rest-only"])
def test_a_buy_the_streamed_balance_cannot_pay_is_not_sent(sim, symbol, streams):
    """A refused order counts against Binance's order limits: with the balance from the stream,
    a buy it cannot pay waits; the REST-only control sends it and has it refused."""
    with bot(symbol, streams=streams, tick=1.0) as (subject, lines):
        engine = subject.runs[symbol.pk].engine
        sim.engine.set_balance("USDT", D("10"))  # withdrawn out of band: no further 50 USDT buy fits
        if streams:
            wait_for(lambda: engine.feed.free("USDT") == D("10"), what="the balance from the stream")
        sim.engine.set_price("BTC/USDT", D("59700"))  # the 59800 buy fills; the grid wants one at 59200
        refused = Order.objects.filter(symbol=symbol, side="buy", status="rejected")
        wait_for(lambda: engine.short_of_quote or refused.exists(), timeout=15, what="the next buy decided")
        wait_for(lambda: Order.objects.filter(symbol=symbol, side="sell", status="open").exists(), what="the sell")
    assert refused.exists() is not streams
    assert engine.short_of_quote is streams


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["duplicate", "delay"], ids=["duplicated", "delayed"])
def test_a_duplicated_or_late_fill_event_books_one_fill_and_one_sell(sim, symbol, kind):
    """Binance may deliver an event twice, or late (after the REST check found its fill): the
    ledger books each trade once, and the grid places one sell for it."""
    held = {"ms": 600_000} if kind == "delay" else {}  # held until released below
    with bot(symbol, tick=1.0) as (subject, lines):
        engine = subject.runs[symbol.pk].engine
        wait_for(lambda: engine.feed_generation == engine.feed.generation, what="the resync after connecting")
        sim.streams.control(kind, {"count": 1, "match": {"e": "executionReport", "x": "TRADE"}, **held})
        sim.engine.set_price("BTC/USDT", D("59800"))
        sells = Order.objects.filter(symbol=symbol, side="sell", status="open")
        if kind == "delay":
            wait_for(lambda: sim.streams.state()["delayed"] == 1, what="the fill's event held back")

            def found_by_rest() -> bool:
                engine.next_safety_check = 0.0  # ask for the REST check until it has found the fill
                return sells.exists()
            wait_for(found_by_rest, timeout=15, what="the sell, from the fill found by REST")
            assert sim.streams.state()["held"] == 1 and engine.feed.trades_received == 0
            sim.streams.control("release", {})
            wait_for(lambda: engine.feed.trades_received == 1, what="the late event received")
        else:
            wait_for(sells.exists, timeout=15, what="the sell")
            wait_for(lambda: sim.streams.state()["duplicated"] == 1, what="the event duplicated")
        after_a_tick(subject, symbol)
        after_a_tick(subject, symbol)
    assert Fill.objects.filter(symbol=symbol, side="buy").count() == 1
    assert sum(1 for o in sim.engine.orders() if o.side == "SELL") == 1 and no_duplicates(sim)

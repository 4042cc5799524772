"""A USDⓈ-M futures symbol on the exchange's streams, through real ccxt.pro binanceusdm against the
simulator, in a real `Bot`: the fill of a buy gets its reduce-only sell out on the fill event, with
the exchange's realised PnL booked from the stream; when the listen key ends, the account takes a
new one, resyncs by REST and loses no fill."""
from __future__ import annotations

from collections import Counter
from decimal import Decimal

import pytest

from tests.exchange.test_streams import SLOW_TICK, after_a_tick, bot
from tests.paper import futures_config
from tests.procs import wait_for
from trading.exchange.session import session_for
from trading.models import ExchangeAccount, Fill, MarketType, Order, Symbol
from trading.simulator import SimulatorServer

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]
D = Decimal


@pytest.fixture
def fsim():
    with SimulatorServer(futures=futures_config(), streams=True) as server:  # Binance's fapi limits
        yield server


@pytest.fixture
def symbol(fsim):
    account = ExchangeAccount.objects.create(name="futures", exchange_id="binance", market_type=MarketType.USDM,
                                             paper=True, base_url=fsim.base_url)
    return Symbol.objects.create(account=account, symbol="BTC/USDT", price_interval=D("100"), order_quantity=D("200"),
                                 min_order_value=D("100"), buy_window_size=3, sell_window_size=3,
                                 position_safety_check=0, reconcile_interval=3600, leverage=5)


def exchange_sells(fsim):
    return [o for o in fsim.futures.orders() if o.side == "SELL"]


def no_duplicates(fsim) -> bool:
    ids = Counter(o.client_order_id for o in fsim.futures.orders())
    return max(ids.values()) == 1


def test_a_fill_event_gets_the_reduce_only_sell_out_within_a_second(fsim, symbol):
    engine = fsim.futures
    with bot(symbol) as (subject, lines):
        after_a_tick(subject, symbol)
        engine.set_price("BTCUSDT", D("49890"))  # the buy at 49900 fills
        wait_for(lambda: exchange_sells(fsim), timeout=5, what="the sell")
        (sell,) = exchange_sells(fsim)
        buy_fill = next(t for t in engine.trades() if t.side == "BUY")
        assert sell.time - buy_fill.time < 1000 < SLOW_TICK * 1000  # the event, not the next poll
        assert engine.is_reduce_only(sell.order_id)
        engine.set_price("BTCUSDT", D("50010"))  # and the sell fills
        wait_for(lambda: Fill.objects.filter(symbol=symbol, side="sell").exists(), timeout=5, what="the sell's fill")
    sell_fill = Fill.objects.get(symbol=symbol, side="sell")
    assert sell_fill.realized_pnl == engine.realized_pnl(int(sell_fill.exchange_trade_id)) == D("0.4")  # 0.004 x 100
    assert any("from the exchange's streams" in line for line in lines)


def test_an_ended_listen_key_is_replaced_and_no_fill_is_lost(fsim, symbol):
    engine = fsim.futures
    with bot(symbol, tick=1.0) as (subject, lines):
        streams = session_for(subject.symbols[0].account).streams
        generation, first_key = streams.generation, engine.listen_key()
        fsim.streams.control("terminate", {})  # the key is closed: its stream ends
        engine.set_price("BTCUSDT", D("49790"))  # two buys fill while the user stream is down
        wait_for(lambda: streams.generation > generation, timeout=30, what="streams back")
        wait_for(lambda: Fill.objects.filter(symbol=symbol, side="buy").count() == 2, timeout=15, what="both fills")
        wait_for(lambda: Order.objects.filter(symbol=symbol, side="sell", status="open").count() == 2, timeout=15,
                 what="both sells")
    assert first_key and engine.listen_key() not in (None, first_key)
    assert engine.position("BTCUSDT").qty == D("0.008") and no_duplicates(fsim)

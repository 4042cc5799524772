"""The grid engine on a USDⓈ-M futures symbol, through real ccxt.binanceusdm against the simulator's
fapi: reduce-only sells, the start-up checks, the margin lock, a refused reduce-only sell, and the
liquidation watch."""
from __future__ import annotations

from decimal import Decimal as D

import pytest

from locking.nop import NopLock
from trading import metrics, services
from trading.engine import SymbolEngine
from trading.exchange.accounts import gateway_for
from trading.exchange.types import FuturesAccount, FuturesPosition
from trading.models import ExchangeAccount, GridSlot, MarketType, Order, Symbol

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def fsymbol(fsim):
    account = ExchangeAccount.objects.create(name="futures", exchange_id="binance", market_type=MarketType.USDM,
                                             paper=True, base_url=fsim.base_url)
    return Symbol.objects.create(
        account=account, symbol="BTC/USDT", price_interval=D("100"), order_quantity=D("200"), min_order_value=D("100"),
        buy_window_size=4, sell_window_size=4, position_safety_check=0, leverage=5, margin_mode="isolated",
        max_leverage=10, margin_lock_duration_seconds=60,
    )


def engine_for(symbol: Symbol) -> SymbolEngine:
    symbol = Symbol.objects.select_related("account").get(pk=symbol.pk)
    engine = SymbolEngine(symbol, gateway_for(symbol.account), NopLock(), writer=services.Writer("test", 0))
    engine.prepare()
    return engine


def live(side: str) -> list[Order]:
    return list(Order.objects.filter(side=side, status__in=["open", "partially_filled"]).order_by("-price"))


def test_buys_are_post_only_and_each_filled_buys_sell_is_reduce_only(fsim, fsymbol):
    engine = engine_for(fsymbol)
    assert fsim.futures.leverage("BTCUSDT") == (5, "ISOLATED")  # set on the exchange before trading
    engine.tick()
    buys = live("buy")
    assert [b.price for b in buys] == [D("49900"), D("49800"), D("49700")]
    assert all(o.time_in_force == "GTX" for o in fsim.futures.open_orders())
    fsim.futures.set_price("BTCUSDT", D("49890"))  # the buy at 49900 fills
    engine.tick()
    (sell,) = live("sell")
    assert (sell.price, sell.amount) == (D("50000"), D("0.004"))
    assert fsim.futures.is_reduce_only(int(sell.exchange_order_id))
    assert fsim.futures.position("BTCUSDT").qty == D("0.004")
    fsim.futures.set_price("BTCUSDT", D("50010"))
    engine.tick()
    slot = GridSlot.objects.get(symbol=fsymbol, level=-1)
    assert (slot.holding, slot.round_trips) == (0, 1)
    # (50000 - 49900) x 0.004 = 0.4, less maker fees of 0.02 % on both legs (0.03992 + 0.04).
    assert slot.realized_pnl == D("0.4") - D("0.03992") - D("0.04")
    assert fsim.futures.position("BTCUSDT").qty == 0


@pytest.mark.parametrize("setup, reason", [
    (lambda sim, symbol: sim.futures.set_hedge_mode(True), "hedge mode"),
    (lambda sim, symbol: Symbol.objects.filter(pk=symbol.pk).update(leverage=None, max_leverage=10),
     "leverage 20x at the exchange is above max_leverage 10x"),
    (lambda sim, symbol: Symbol.objects.filter(pk=symbol.pk).update(position_safety_check=300),
     "position safety check: available 10000"),
])
def test_a_failed_start_up_check_pauses_the_symbol_with_the_reason(fsim, fsymbol, setup, reason):
    setup(fsim, fsymbol)
    engine = engine_for(fsymbol)
    paused = Symbol.objects.get(pk=fsymbol.pk)
    assert paused.status == "paused" and reason in paused.pause_reason
    assert engine.tick().paused and not fsim.futures.open_orders()


def test_the_checks_run_with_a_position_already_open(fsim, fsymbol):
    engine_for(fsymbol).tick()
    fsim.futures.set_price("BTCUSDT", D("49890"))  # a position exists
    Symbol.objects.filter(pk=fsymbol.pk).update(position_safety_check=300)
    engine_for(fsymbol)  # a restart
    assert "position safety check" in Symbol.objects.get(pk=fsymbol.pk).pause_reason


def test_a_margin_refusal_locks_buys_and_cancels_the_far_ones_but_not_sells(fsim, fsymbol):
    engine = engine_for(fsymbol)
    engine.tick()
    fsim.futures.set_price("BTCUSDT", D("49890"))  # the buy at 49900 fills
    # 200 USDT at 5x: the position and the two resting buys hold 120 of margin, so two more buys
    # of the six the wider window wants fit, and the third is refused (-2019).
    fsim.futures.set_wallet(D("200"))
    Symbol.objects.filter(pk=fsymbol.pk).update(buy_window_size=6)
    result = engine.tick()
    assert "insufficient_funds" in result.rejected_reasons
    assert engine.monotonic() < engine.buys_paused_until
    assert [b.price for b in live("buy")] == [D("49800"), D("49700"), D("49600")]  # the nearest half of six
    assert len(result.canceled) == 1  # the far buy at 49500, placed a moment before
    assert len(live("sell")) == 1  # the filled buy's reduce-only sell went out regardless
    buys = Order.objects.filter(side="buy").count()
    engine.tick()
    assert Order.objects.filter(side="buy").count() == buys  # no buy is tried while locked


def test_a_refused_reduce_only_sell_keeps_the_holding_and_asks_for_a_reconcile(fsim, fsymbol):
    engine = engine_for(fsymbol)
    engine.tick()
    fsim.futures.set_price("BTCUSDT", D("49890"))
    engine.tick()
    (sell,) = live("sell")
    gateway = gateway_for(fsymbol.account)
    gateway.cancel_order("BTC/USDT", exchange_order_id=sell.exchange_order_id)
    # Someone closes the position by hand: the grid's slot still holds 0.004 in the ledger.
    fsim.futures.place_order("BTCUSDT", "SELL", "LIMIT", D("0.004"), D("49890"), "manual", time_in_force="GTC",
                             reduce_only=True)
    assert fsim.futures.position("BTCUSDT").qty == 0
    engine.tick()  # the canceled sell is seen; its replacement is refused with -2022
    refused = Order.objects.filter(side="sell", status="rejected").last()
    assert refused is not None and "reduce-only refused" in refused.last_error
    assert GridSlot.objects.get(symbol=fsymbol, level=-1).holding == D("0.004")  # never written off
    assert engine.reconcile_wanted and engine.held_sells == {-1}
    engine.tick()
    assert Order.objects.filter(side="sell", status="rejected").count() == 1  # not resent before reconcile
    engine.reconciled()
    assert not engine.held_sells


def test_buys_pause_near_the_liquidation_price(fsim, fsymbol):
    engine = engine_for(fsymbol)
    position = FuturesPosition("BTC/USDT", D("0.1"), D("50000"), D("50000"), D("0"), D("47000"), "isolated", 5)
    account = FuturesAccount("USDT", D("1000"), D("1000"), D("0"), D("1000"), D("20"), D("0"))
    services.position_snapshot_record(fsymbol, position, account)  # as a reconcile pass would
    result = engine.tick()  # price 50000: 6 % above the liquidation price, inside the 10 % buffer
    assert engine.near_liquidation and not live("buy") and not result.placed
    assert metrics.LIQUIDATION_DISTANCE.labels("BTC/USDT")._value.get() == pytest.approx(0.06)
    Symbol.objects.filter(pk=fsymbol.pk).update(liquidation_buffer=D("0.05"))
    engine.tick()
    assert not engine.near_liquidation and len(live("buy")) == 3

"""Many symbols on one `runbot` against the simulator at Binance's default limits (6,000 weight a
minute, 100 orders per 10 s), prices moving, across minute boundaries: 50 symbols on the streams
for two and a half minutes, and 20 polling by REST (a simulator without streams) for 75 s. The
account's session keeps every symbol under the limits, so the exchange answers no 429, no -1015
and no 418, and every filled buy still gets its sell. The control run takes the shared budget
away (every request goes at once, as with one self-throttling client per thread): the exchange
then answers 429s within a minute."""
from __future__ import annotations

import os
import signal
import threading
import time
from decimal import Decimal

import pytest

from locking.nop import NopLock
from tests.procs import manage, wait_for
from trading.exchange import session
from trading.models import ExchangeAccount, GridSlot, Order, Symbol
from trading.runner import Bot, BotOptions
from trading.simulator import MarketSpec, SimConfig, SimulatorServer

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]
D = Decimal
CASES = {"streams": (50, 150), "polling": (20, 75)}  # symbols, seconds (over a minute: limits count per minute)


@pytest.fixture(params=sorted(CASES))
def case(request):
    streams = request.param == "streams"
    count, seconds = CASES[request.param]
    names = [f"C{i}/USDT" for i in range(count)]
    config = SimConfig(  # Binance's default limits: weight_limit, order_limit_10s, order_limit_day
        markets=[MarketSpec(name, price=D("100"), tick=D("0.01"), step=D("0.001"), volatility=D("0.002"))
                 for name in names],
        balances={"USDT": D("1000000")}, seed=11, tick_seconds=1.0,
    )
    with SimulatorServer(config, streams=streams) as server:
        yield server, names, seconds, streams


def unsold(symbols) -> list[tuple[int, int]]:
    """Filled slots without a live sell. A slot's dust (a fee taken in the base asset leaves less
    than one step to sell, worth far below the 5 USDT minimum) cannot be sold and is not counted."""
    held = GridSlot.objects.filter(symbol__in=symbols).values_list("symbol_id", "level", "holding")
    selling = set(Order.objects.filter(symbol__in=symbols, side="sell", status__in=["open", "partially_filled"])
                  .values_list("symbol_id", "level"))
    return [(symbol_id, level) for symbol_id, level, holding in held
            if D(holding) * 90 >= 5 and (symbol_id, level) not in selling]


def make_symbols(market, names) -> list[Symbol]:
    account = ExchangeAccount.objects.create(name="limits", exchange_id="binance", paper=True, base_url=market.base_url)
    return [Symbol.objects.create(account=account, symbol=name, price_interval=D("0.5"), order_quantity=D("10"),
                                  min_order_value=D("5"), buy_window_size=5, sell_window_size=50,
                                  position_safety_check=0) for name in names]


def test_many_symbols_stay_within_binances_limits(case, tmp_path):
    market, names, run_seconds, streams = case
    symbols = make_symbols(market, names)
    log = tmp_path / "runbot.log"
    proc = manage("runbot", "--account", "limits", "--status-interval", "15", log_path=log, QM_INSTANCE_ID="limits-bot")
    started = time.monotonic()
    try:
        wait_for(lambda: time.monotonic() - started > run_seconds, timeout=run_seconds + 5, what="the run's length",
                 proc=proc, log_path=log)
        market.ticking.clear()  # prices stand still: every fill so far must get its sell
        wait_for(lambda: not unsold(symbols), timeout=60, what="a sell for every filled buy", proc=proc, log_path=log)
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=60)
    state = market.control.state({})
    assert (state["refused429"], state["refusedOrders"], state["banned418"]) == (0, 0, 0), state
    filled_buys = Order.objects.filter(symbol__in=symbols, side="buy", status="filled").count()
    assert filled_buys > 0, "the prices moved too little to test anything"
    assert Order.objects.filter(symbol__in=symbols, side="buy").exclude(status="not_placed").count() >= 100
    text = log.read_text()
    assert ("from the exchange's streams" in text) == streams and "a tick every" in text


class NoBudget(session.RequestBudget):
    """The unprotected control: every request and order goes at once, as with a ccxt client per
    thread that throttles only itself."""

    def before(self, method: str, *, write: bool) -> None:
        return None

    def take_order(self) -> float:
        return 0.0

    def tick_interval(self, symbols: int, base: float) -> float:
        return base


def test_control_without_the_shared_budget_the_exchange_refuses(monkeypatch):
    names = [f"C{i}/USDT" for i in range(CASES["polling"][0])]
    config = SimConfig(markets=[MarketSpec(name, price=D("100"), tick=D("0.01"), step=D("0.001")) for name in names],
                       balances={"USDT": D("1000000")}, seed=11, tick_seconds=1.0)  # Binance's default limits
    with SimulatorServer(config, streams=False) as market:
        symbols = make_symbols(market, names)
        monkeypatch.setattr(session, "budget_for", lambda account: NoBudget(account.name, session.LocalState()))
        session.forget_sessions()
        bot = Bot(symbols, NopLock(), BotOptions(instance_id="control-bot", status_interval=3600, reconcile=False),
                  out=lambda line: None)
        thread = threading.Thread(target=bot.run_until_stopped, daemon=True)
        thread.start()
        try:
            wait_for(lambda: market.control.state({})["refused429"] > 0, timeout=90, what="the exchange's first 429")
        finally:
            bot.stop()
            thread.join(timeout=60)
            session.forget_sessions()
    assert market.control.state({})["refused429"] > 0

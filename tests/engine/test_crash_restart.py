"""`kill -9` of a real `runbot` process in the middle of a price path, then a restart: no
duplicate order at the exchange, no inventory lost, and the same PnL as an uninterrupted run."""
import os
import signal
from collections import Counter
from decimal import Decimal

import pytest

from tests.engine.test_scripted_path import PATH, run_path
from tests.procs import manage, wait_for
from trading.models import ExchangeAccount, GridSlot, Order, Symbol
from trading.simulator import MarketSpec, SimConfig, SimulatorServer

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]


def realized(symbol) -> Decimal:
    return sum((s.realized_pnl for s in GridSlot.objects.filter(symbol=symbol)), Decimal(0))


def filled(symbol, side, level):
    return Order.objects.filter(symbol=symbol, side=side, level=level, status="filled").exists()


def live(symbol, side, level):
    return Order.objects.filter(symbol=symbol, side=side, level=level, status__in=["open", "partially_filled"]).exists()


def start_bot(tmp_path, symbol):
    log = tmp_path / "runbot.log"
    proc = manage("runbot", "--symbols", symbol.symbol, "--account", symbol.account.name, "--tick-interval", "0.05",
                  "--status-interval", "5", log_path=log, QM_INSTANCE_ID="crash-test-bot",
                  QM_RECV_WINDOW_MS="1000", QM_CLOCK_MARGIN_MS="500")
    return proc, log


def test_kill_9_mid_path_then_restart(sim, paper_symbol, make_engine, tmp_path):
    symbol = paper_symbol
    proc, log = start_bot(tmp_path, symbol)
    steps = [Decimal(p) for p in PATH]
    try:
        # Wait for the first buys, then walk down; kill -9 right after the fill at level -3.
        wait_for(lambda: live(symbol, "buy", -1) and live(symbol, "buy", -2), what="first buys", proc=proc, log_path=log)
        for index, price in enumerate(steps[1:], start=1):
            sim.engine.set_price("BTC/USDT", price)
            level = int((price - Decimal(60000)) / 200)
            going_down = index <= 5
            if going_down:
                wait_for(lambda level=level: filled(symbol, "buy", level) and live(symbol, "sell", level), what=f"buy {level} filled and its sell live",
                         proc=proc, log_path=log)
                if level == -3:
                    os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait()
                    proc, log = start_bot(tmp_path, symbol)
                    # The kill may land between an intent and its send. The restarted bot first settles
                    # every such intent (by query, and "never placed" only after the request window),
                    # then re-places the buy window below the price before the path goes on.
                    wait_for(lambda: not Order.objects.filter(symbol=symbol, status__in=["pending", "unknown"]).exists()
                             and live(symbol, "buy", -4) and live(symbol, "buy", -5),
                             what="restarted bot settled its intents and holds the buy window", proc=proc, log_path=log)
            else:
                wait_for(lambda level=level: filled(symbol, "sell", level - 1), what=f"sell of slot {level - 1} filled", proc=proc, log_path=log)
        wait_for(lambda: all(filled(symbol, "sell", lvl) for lvl in range(-5, 0)), what="all sells filled", proc=proc, log_path=log)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            assert proc.wait(timeout=30) == 0
    # No intent ever had two orders at the exchange, and the ledger matches it.
    remote = sim.engine.ledger("BTC/USDT")
    counts = Counter(o["clientOrderId"] for o in remote)
    assert max(counts.values()) == 1
    local = set(Order.objects.filter(symbol=symbol).exclude(status__in=["rejected", "not_placed"]).values_list("client_order_id", flat=True))
    assert {o["clientOrderId"] for o in remote} == local
    # No inventory lost: every slot that bought also sold; what is held is dust below one step.
    for slot in GridSlot.objects.filter(symbol=symbol):
        assert slot.holding < Decimal("0.00001"), slot.level
    crashed_pnl = realized(symbol)

    # The same path without a crash, in process, on a fresh exchange and symbol.
    config = SimConfig(markets=[MarketSpec("BTC/USDT", price=Decimal("60000"), tick=Decimal("0.01"), step=Decimal("0.00001"),
                                           min_notional=Decimal("5"))], balances={"USDT": Decimal("100000"), "BTC": Decimal("0")})
    with SimulatorServer(config) as other:
        account = ExchangeAccount.objects.create(name="paper-b", exchange_id="binance", paper=True, base_url=other.base_url)
        twin = Symbol.objects.create(
            account=account, symbol="BTC/USDT", price_interval=symbol.price_interval, order_quantity=symbol.order_quantity,
            min_order_value=symbol.min_order_value, buy_window_size=3, sell_window_size=3, position_safety_check=0,
        )
        run_path(other, make_engine(symbol=twin))
    assert crashed_pnl == realized(twin)

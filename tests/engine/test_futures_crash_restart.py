"""`kill -9` of a real `runbot` trading a USDⓈ-M futures symbol, a fill while it is down, then a
restart: no duplicate order, the exchange's position equal to the slots' holdings, and the ledger's
realised PnL (fees included) plus funding equal to what the simulator's wallet gained."""
from __future__ import annotations

import os
import signal
from collections import Counter
from decimal import Decimal as D

import pytest

from tests.engine.test_crash_restart import filled, live, start_bot
from tests.paper import futures_config
from tests.procs import wait_for
from trading.models import ExchangeAccount, FundingPayment, GridSlot, MarketType, Order, Symbol
from trading.simulator import SimulatorServer

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]


def reconcile(symbol):
    from locking.nop import NopLock
    from reconciliation.models import ReconcileRun
    from reconciliation.services import Reconciler
    from trading.exchange.accounts import gateway_for

    symbol = Symbol.objects.select_related("account").get(pk=symbol.pk)
    return Reconciler(symbol, gateway_for(symbol.account), NopLock(), instance_id="cron",
                      trigger=ReconcileRun.Trigger.CRON).run()


def test_kill_9_with_a_futures_position_then_restart(tmp_path):
    with SimulatorServer(futures=futures_config()) as sim:
        engine = sim.futures
        account = ExchangeAccount.objects.create(name="futures", exchange_id="binance", market_type=MarketType.USDM,
                                                 paper=True, base_url=sim.base_url)
        symbol = Symbol.objects.create(
            account=account, symbol="BTC/USDT", price_interval=D("100"), order_quantity=D("200"),
            min_order_value=D("100"), buy_window_size=3, sell_window_size=3, position_safety_check=0, leverage=5,
        )
        wallet_before = engine.account().wallet
        proc, log = start_bot(tmp_path, symbol)
        try:
            wait_for(lambda: live(symbol, "buy", -1) and live(symbol, "buy", -2), what="first buys", proc=proc,
                     log_path=log)
            engine.set_price("BTCUSDT", D("49890"))
            wait_for(lambda: live(symbol, "sell", -1), what="sell of level -1", proc=proc, log_path=log)
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            engine.set_price("BTCUSDT", D("49790"))  # level -2 fills while no bot runs
            engine.fund_now()  # and a funding payment is booked
            proc, log = start_bot(tmp_path, symbol)
            wait_for(lambda: live(symbol, "sell", -2) and live(symbol, "sell", -1)
                     and not Order.objects.filter(symbol=symbol, status__in=["pending", "unknown"]).exists(),
                     what="both sells live after the restart", proc=proc, log_path=log)
            engine.set_price("BTCUSDT", D("50010"))
            wait_for(lambda: filled(symbol, "sell", -1) and filled(symbol, "sell", -2), what="both sells filled",
                     proc=proc, log_path=log)
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
                assert proc.wait(timeout=30) == 0
        outcome = reconcile(symbol)  # as cron would: it also stores the funding payment
        assert outcome.status in ("clean", "repaired") and not outcome.unresolved, outcome.findings
        remote = engine.ledger("BTCUSDT")
        counts = Counter(o["clientOrderId"] for o in remote)
        assert max(counts.values()) == 1, counts
        local = set(Order.objects.filter(symbol=symbol).exclude(status__in=["rejected", "not_placed"])
                    .values_list("client_order_id", flat=True))
        assert {o["clientOrderId"] for o in remote} == local
        slots = list(GridSlot.objects.filter(symbol=symbol))
        assert engine.position("BTCUSDT").qty == sum((s.holding for s in slots), D(0)) == 0
        assert {s.level: s.round_trips for s in slots} == {-1: 1, -2: 1}
        gained = engine.account().wallet - wallet_before
        realized = sum((s.realized_pnl for s in slots), D(0))
        funding = sum(FundingPayment.objects.filter(symbol=symbol).values_list("amount", flat=True), D(0))
        assert funding < 0  # the long paid
        assert realized + funding == gained  # to the last unit

"""`runbot` reconciles its own symbols every `reconcile_interval`.

A real `runbot` process trades on paper against the simulator over HTTP. While it runs, an order
with our client-id prefix and no ledger row (what a bot that died between the exchange's accept
and its own write leaves behind) is placed at the exchange and partly filled there. The engine's
tick looks only at the ledger's own live orders, so that fill reaches the ledger only through a
reconcile pass: the loop's own, at its pace. The control run switches the loop's pass off and
shows the same fill staying out of the ledger.
"""
from __future__ import annotations

import os
import re
import signal
import threading
import urllib.request
from datetime import timedelta
from decimal import Decimal

import pytest

from locking.nop import NopLock
from reconciliation.loop import LoopReconciler
from reconciliation.models import Discrepancy, ReconcileRun
from tests.procs import manage, wait_for
from trading import services
from trading.exchange.accounts import gateway_for
from trading.lockkeys import reconcile_lock_key
from trading.models import Fill, Order, Symbol

pytestmark = pytest.mark.django_db(transaction=True)
D = Decimal
INTERVAL = 1  # seconds: the smallest reconcile_interval a symbol accepts
TICK = 0.05


def start_bot(tmp_path, symbol, *extra):
    log = tmp_path / "runbot.log"
    proc = manage("runbot", "--symbols", symbol.symbol, "--account", symbol.account.name, "--tick-interval", str(TICK),
                  "--status-interval", "1", "--metrics-port", "0", *extra, log_path=log, QM_INSTANCE_ID="loop-bot")
    return proc, log


def ticks(log) -> float:
    """The bot's own tick count, read from its metrics endpoint."""
    match = re.search(r"metrics: (http://\S+/metrics)", log.read_text(errors="replace"))
    if match is None:
        return 0.0
    body = urllib.request.urlopen(match.group(1), timeout=5).read().decode()
    found = re.search(r'^quantmesh_ticks_total\{symbol="BTC/USDT"\} (\S+)$', body, re.M)
    return float(found.group(1)) if found else 0.0


def stop(proc):
    os.killpg(proc.pid, signal.SIGTERM)
    assert proc.wait(timeout=60) == 0


def loop_runs(symbol):
    return list(ReconcileRun.objects.filter(symbol=symbol, trigger="loop", finished_at__isnull=False).order_by("started_at"))


def out_of_band_fill(sim, symbol) -> tuple[str, str]:
    """An order of ours that the ledger does not know, half filled at the exchange: (client id, trade id)."""
    cid = f"{symbol.account.client_id_prefix}-{symbol.pk}-bm4-0"
    sim.engine.place_order("BTC/USDT", "BUY", "LIMIT", D("0.00084"), D("59200"), cid)
    (trade,) = sim.engine.fill_order("BTC/USDT", client_order_id=cid, qty=D("0.00042"))
    return cid, str(trade.trade_id)


def repaired(symbol, cid, trade_id) -> bool:
    return Fill.objects.filter(symbol=symbol, exchange_trade_id=trade_id, order__client_order_id=cid).exists()


@pytest.fixture
def symbol(paper_symbol):
    Symbol.objects.filter(pk=paper_symbol.pk).update(reconcile_interval=INTERVAL)
    return Symbol.objects.select_related("account").get(pk=paper_symbol.pk)


@pytest.mark.slow
def test_the_loop_reconciles_at_its_interval_and_repairs_a_fill_made_out_of_band(sim, symbol, tmp_path):
    proc, log = start_bot(tmp_path, symbol)
    try:
        wait_for(lambda: loop_runs(symbol), what="the loop's first reconcile pass", proc=proc, log_path=log)
        cid, trade_id = out_of_band_fill(sim, symbol)
        wait_for(lambda: repaired(symbol, cid, trade_id), timeout=20, what="the out-of-band fill in the ledger",
                 proc=proc, log_path=log)
        wait_for(lambda: len(loop_runs(symbol)) >= 4, timeout=20, what="four loop passes", proc=proc, log_path=log)
    finally:
        stop(proc)
    # The loop's own pass found and repaired it (not the engine, and not cron or Celery: none ran).
    found = Discrepancy.objects.filter(run__trigger="loop", client_order_id=cid)
    assert sorted(found.values_list("kind", "action")) == [("missed_fill", "repaired"), ("orphan", "adopted")]
    order = Order.objects.get(client_order_id=cid)
    assert (order.status, order.filled_amount, order.level) == ("partially_filled", D("0.00042"), -4)
    assert Fill.objects.filter(exchange_trade_id=trade_id).count() == 1
    runs = loop_runs(symbol)
    assert {r.instance_id for r in runs} == {"loop-bot"} and all(r.status != "failed" for r in runs)
    assert not ReconcileRun.objects.exclude(trigger="loop").exists()
    # At its pace: never sooner than the interval after the last pass, and never far behind it.
    gaps = [(b.started_at - a.started_at).total_seconds() for a, b in zip(runs, runs[1:])]
    assert all(INTERVAL - 0.01 <= gap <= INTERVAL + 2 for gap in gaps), gaps
    assert "reconcile: " in log.read_text()  # the status line says how the last pass went


@pytest.mark.slow
def test_control_without_the_loops_pass_the_fill_stays_out_of_the_ledger(sim, symbol, tmp_path):
    proc, log = start_bot(tmp_path, symbol, "--no-reconcile")
    try:
        wait_for(lambda: Order.objects.filter(symbol=symbol, status="open").count() >= 2, what="the first buys",
                 proc=proc, log_path=log)
        cid, trade_id = out_of_band_fill(sim, symbol)
        start = wait_for(lambda: ticks(log), what="the bot's tick count", proc=proc, log_path=log)
        # Three reconcile intervals of ticks (each tick lasts at least TICK); the engine's own full
        # trade sync (every 30 s) would find the trade eventually, the loop's pass within one interval.
        wait_for(lambda: ticks(log) >= start + 3 * INTERVAL / TICK, timeout=25, what="three intervals of ticks",
                 proc=proc, log_path=log)
        assert not repaired(symbol, cid, trade_id)
        assert not Order.objects.filter(client_order_id=cid).exists()
    finally:
        stop(proc)
    assert not ReconcileRun.objects.exists()


class TimeoutsSeen(NopLock):
    """The no-op lock, noting how long each blocking acquire would wait."""

    def __init__(self):
        super().__init__()
        self.timeouts = []

    def lock(self, key, ttl, timeout, *, floor=0):
        self.timeouts.append(timeout)
        return super().lock(key, ttl, timeout, floor=floor)


@pytest.fixture
def timer(sim, symbol):
    clock = [1000.0]
    locks = TimeoutsSeen()
    subject = LoopReconciler(symbol, gateway_for(symbol.account), locks, instance_id="timer-bot",
                             writer=services.Writer("timer-bot", symbol.fence_token), monotonic=lambda: clock[0])
    return subject, clock, locks


def test_a_pass_made_elsewhere_postpones_the_loops_next_one(timer, symbol):
    subject, clock, _ = timer
    ReconcileRun.objects.create(symbol=symbol, instance_id="cron", trigger="cron", status="clean")
    assert subject.run_if_due() is None  # the cron pass just started: not due for about one interval
    assert 1000.0 + INTERVAL - 0.5 < subject.next_check <= 1000.0 + INTERVAL
    ReconcileRun.objects.update(started_at=ReconcileRun.objects.get().started_at - timedelta(seconds=5))
    clock[0] = subject.next_check
    outcome = subject.run_if_due()
    assert outcome is not None and outcome.status in ("clean", "repaired")
    assert ReconcileRun.objects.filter(trigger="loop", instance_id="timer-bot").count() == 1
    assert subject.run_if_due() is None  # the loop's own pass counts too
    assert "reconcile: " in subject.summary()


def test_a_busy_reconcile_lock_is_skipped_not_waited_for(timer, symbol):
    subject, _, locks = timer
    key = reconcile_lock_key(subject.gateway.exchange.id, symbol.symbol)
    held = threading.Thread(target=locks.try_lock, args=(key, 60))  # another owner holds it (a cron pass)
    held.start()
    held.join()
    assert subject.run_if_due() is None
    assert locks.timeouts == [0]  # a tick waits for no other pass
    assert not ReconcileRun.objects.exists()
    assert subject.summary().startswith("reconcile: skipped")

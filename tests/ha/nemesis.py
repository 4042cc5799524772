"""A seeded nemesis against three real `runbot` instances: SIGKILL, SIGSTOP past the lease TTL,
Redis restart, FLUSHALL and lost exchange replies, while prices move. Afterwards everything is
healed, a final reconcile runs, and the checkers look for duplicates, lost fills, a ledger that
differs from the exchange, and stale (fence-violating) writes."""
from __future__ import annotations

import os
import random
import signal
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from decimal import Decimal

from django.utils import timezone

from locking.nop import NopLock
from reconciliation.models import ReconcileRun
from reconciliation.services import reconcile_symbols
from tests.ha.harness import (
    Cluster,
    RedisServer,
    duplicate_slot_orders,
    ledger_matches_exchange,
    process_state,
    repeated_client_ids,
    stale_writes,
)
from tests.procs import wait_for
from trading.models import LIVE_STATUSES, ExchangeAccount, Fill, GridSlot, Order, Symbol
from trading.simulator import SimConfig, SimulatorServer, market_for
from trading.simulator.futures import FuturesConfig, futures_market

D = Decimal
MARKETS = {"BTC/USDT": "60000", "ETH/USDT": "3000", "SOL/USDT": "150"}
INSTANCES = ("bot-a", "bot-b", "bot-c")
LEASE_TTL_MS = 1500


@dataclass
class Report:
    seed: int
    duration: float
    unsafe: bool
    faults: Counter = field(default_factory=Counter)
    orders: int = 0
    fills: int = 0
    duplicates: list = field(default_factory=list)
    repeated_ids: list = field(default_factory=list)
    lost_fills: list = field(default_factory=list)
    mismatches: list = field(default_factory=list)
    balance_mismatches: list = field(default_factory=list)
    stale_writes: list = field(default_factory=list)
    longest_takeover: float = 0.0
    contested: int = 0  # freezes during which another instance placed an order on the frozen intent's slot

    @property
    def clean(self) -> bool:
        return not (self.duplicates or self.repeated_ids or self.lost_fills or self.mismatches
                    or self.balance_mismatches or self.stale_writes)

    def row(self) -> str:
        faults = ",".join(f"{k}={v}" for k, v in sorted(self.faults.items()))
        return (f"{self.seed:>5} {self.duration:>6.0f}s {sum(self.faults.values()):>6} {self.orders:>6} {self.fills:>5} "
                f"{len(self.duplicates):>4} {len(self.lost_fills):>4} {len(self.mismatches) + len(self.balance_mismatches):>4} "
                f"{len(self.stale_writes):>4} {self.longest_takeover:>6.2f}s  {faults}"
                + (f",contested={self.contested}" if self.faults.get("pause_at_before_send") else ""))


HEADER = "  seed duration faults orders fills dups lost diff stale takeover  faults by kind"
SUMMARY: list[str] = []  # one row per run in this session, printed at the end of the test run


def setup_market(seed: int, *, futures: bool = False):
    """The spot markets, or the same markets as USDⓈ-M perpetuals (orders of 200 USDT there, above
    BTCUSDT's 100 USDT minimum, at 5x leverage set by the bots)."""
    if futures:
        perpetuals = FuturesConfig(markets=[futures_market(m, price=p) for m, p in MARKETS.items()], seed=seed,
                                   balances={"USDT": D("1000000")}, weight_limit=10**9)  # several bots tick every 50 ms
        sim = SimulatorServer(futures=perpetuals).start()
    else:
        config = SimConfig(markets=[market_for(m, price=p) for m, p in MARKETS.items()], seed=seed,
                           balances={"USDT": D("1000000")}, weight_limit=10**9)  # several bots tick every 50 ms
        sim = SimulatorServer(config).start()
    account = ExchangeAccount.objects.create(name=f"paper-{seed}", exchange_id="binance", paper=True, base_url=sim.base_url,
                                             market_type="usdm" if futures else "spot")
    for market, price in MARKETS.items():
        Symbol.objects.create(account=account, symbol=market, price_interval=D(price) / 400,
                              order_quantity=D("200") if futures else D("20"), min_order_value=D("5"),
                              buy_window_size=3, sell_window_size=3, position_safety_check=0,
                              leverage=5 if futures else None)
    return sim


def venue(sim):
    """The simulated account the bots trade: the futures one when the simulator has it."""
    return sim.futures if sim.futures is not None else sim.engine


def run(seed: int, duration: float, tmp_path, *, unsafe: bool = False, mix: dict | None = None,
        pause_at: str | None = None, move_prices: bool = True, futures: bool = False) -> Report:
    """`pause_at` names a fault point (see trading.faultpoints) where every instance freezes
    itself once; the nemesis resumes it 6.5 s later (past its lease and its order lock)."""
    rng = random.Random(seed)
    report = Report(seed=seed, duration=duration, unsafe=unsafe)
    sim = setup_market(seed, futures=futures)
    exchange = venue(sim)
    redis_server = RedisServer(tmp_path)
    redis_server.start()
    extra_env = {}
    if pause_at:
        extra_env["QM_TEST_PAUSE_AT"] = pause_at
    cluster = Cluster(tmp_path, redis_server.url, lease_ttl_ms=LEASE_TTL_MS, extra_env=extra_env, unprotected=unsafe)
    stop_prices = threading.Event()

    def step_prices():
        while not stop_prices.wait(0.1):
            for market in MARKETS:
                exchange.step(1, market)

    mover = threading.Thread(target=step_prices, daemon=True)
    pending: list[tuple[float, str, str]] = []  # (due, action, target)
    down: set[str] = set()
    paused: set[str] = set()
    frozen_intents: set[str] = set()  # client ids an instance froze right before sending
    freezes: list[list] = []  # [instance, frozen at, resumed at or None, its pending intents' pks]
    takeovers: list[tuple[float, list[str], str]] = []
    mix = mix or {"kill": 3, "pause": 3, "redis_restart": 1, "flushall": 1, "reply_loss": 2}
    kinds = [k for k, w in mix.items() for _ in range(w)]
    try:
        account = f"paper-{seed}"
        for name in INSTANCES:
            cluster.start(name, "--account", account)
        wait_for(lambda: Symbol.objects.exclude(owner_instance="").count() == len(MARKETS), timeout=60,
                 what="every symbol owned", log_path=cluster.log("bot-a"))
        if move_prices:
            mover.start()
        end = time.monotonic() + duration
        next_fault = time.monotonic() + rng.uniform(0.5, 1.5)
        while time.monotonic() < end or pending:
            now = time.monotonic()
            for item in [p for p in pending if p[0] <= now]:
                pending.remove(item)
                _, action, target = item
                if action == "restart":
                    cluster.start(target, "--account", account)
                    down.discard(target)
                elif action == "resume":
                    os.killpg(cluster.procs[target].pid, signal.SIGCONT)
                    paused.discard(target)
                    for freeze in freezes:
                        if freeze[0] == target and freeze[2] is None:
                            freeze[2] = timezone.now()
                elif action == "redis_up":
                    redis_server.start()
                    down.discard("redis")
            if pause_at:
                for name in INSTANCES:
                    proc = cluster.procs.get(name)
                    if name in paused or name in down or proc is None or proc.poll() is not None:
                        continue
                    if process_state(proc.pid) == "T":  # froze itself at the fault point
                        paused.add(name)
                        pending_intents = Order.objects.filter(instance_id=name, status="pending")
                        frozen_intents.update(pending_intents.values_list("client_order_id", flat=True))
                        freezes.append([name, timezone.now(), None, list(pending_intents.values_list("pk", flat=True))])
                        # Frozen past its lease and past its order lock (5 s), so another instance
                        # has taken the slot over by the time it resumes.
                        pending.append((now + 6.5, "resume", name))
                        report.faults[f"pause_at_{pause_at}"] += 1
            for started, victims, victim in list(takeovers):
                owners = dict(Symbol.objects.filter(symbol__in=victims).values_list("symbol", "owner_instance"))
                if all(o and o != victim for o in owners.values()):
                    report.longest_takeover = max(report.longest_takeover, time.monotonic() - started)
                    takeovers.remove((started, victims, victim))
            if now >= next_fault and now < end:
                kind = rng.choice(kinds)
                alive = [n for n in INSTANCES if n not in down and n not in paused]
                if kind in ("kill", "pause") and len(alive) > 1:
                    victim = rng.choice(alive)
                    victims = list(Symbol.objects.filter(owner_instance=victim).values_list("symbol", flat=True))
                    if kind == "kill":
                        cluster.kill(victim)
                        down.add(victim)
                        pending.append((now + rng.uniform(0.5, 3.0), "restart", victim))
                    else:
                        os.killpg(cluster.procs[victim].pid, signal.SIGSTOP)
                        paused.add(victim)
                        pending.append((now + LEASE_TTL_MS / 1000 * rng.uniform(1.5, 3.0), "resume", victim))
                    if victims:
                        takeovers.append((now, victims, victim))
                    report.faults[kind] += 1
                elif kind == "redis_restart" and "redis" not in down:
                    redis_server.kill()
                    down.add("redis")
                    pending.append((now + rng.uniform(0.5, 2.0), "redis_up", "redis"))
                    report.faults[kind] += 1
                elif kind == "flushall" and "redis" not in down:
                    redis_server.client().flushall()
                    report.faults[kind] += 1
                elif kind == "reply_loss":
                    sim.drop_next(count=rng.randint(1, 3), path="/fapi/v1/order" if futures else "/api/v3/order")
                    report.faults[kind] += 1
                next_fault = now + rng.uniform(0.4, 1.5)
            time.sleep(0.05)
        if unsafe and frozen_intents:
            # Unprotected, a resumed instance sends its stale order; give it the time to, or the
            # control could stop every bot first and have nothing to flag.
            try:
                wait_for(lambda: bool(frozen_intents & {o["clientOrderId"] for o in exchange.ledger()}), timeout=20,
                         what="a frozen instance's stale order at the exchange", log_path=cluster.log("bot-a"))
            except AssertionError:
                pass  # killed before it could send: the checkers report what there is
        stop_prices.set()
        if mover.is_alive():
            mover.join()
        sim.clear_faults()
        # Healed: let the instances settle every ambiguous intent, then stop them.
        try:
            wait_for(lambda: not Order.objects.filter(status__in=["pending", "unknown"]).exists(), timeout=60,
                     what="no pending or unknown intents left", log_path=cluster.log("bot-a"))
        except AssertionError:
            if not unsafe:
                raise  # without protections the ledger may never settle; the checkers report it
    finally:
        stop_prices.set()
        cluster.stop_all()
        if "redis" in down:
            redis_server.start()
        redis_server.kill()
    final_reconcile(f"paper-{seed}")
    check(report, sim)
    report.contested = sum(1 for freeze in freezes if contested(*freeze))
    sim.stop()
    SUMMARY.append(report.row() + ("  [protections off]" if unsafe else ""))
    return report


def contested(instance: str, frozen_at, resumed_at, intents: list[int]) -> bool:
    """Whether, while `instance` was frozen before sending, another instance placed an order on
    the slot of one of its pending intents: the interleaving the fence and the ledger guard exist for."""
    for intent in Order.objects.filter(pk__in=intents):
        others = Order.objects.filter(symbol_id=intent.symbol_id, level=intent.level, side=intent.side,
                                      created_at__gte=frozen_at).exclude(instance_id=instance)
        if resumed_at is not None:
            others = others.filter(created_at__lte=resumed_at)
        if others.exists():
            return True
    return False


def final_reconcile(account: str) -> None:
    symbols = list(Symbol.objects.select_related("account").filter(account__name=account))
    for symbol in symbols:
        symbol.refresh_from_db()
    reconcile_symbols(symbols, trigger=ReconcileRun.Trigger.CRON, instance_id="final-reconcile", locks=NopLock())


def check(report: Report, sim) -> None:
    exchange = venue(sim)
    ledger = [o for o in exchange.ledger() if not o.get("foreign")]
    report.orders = len(ledger)
    report.repeated_ids = repeated_client_ids(ledger)
    report.duplicates = duplicate_slot_orders(ledger, {})
    report.mismatches = ledger_matches_exchange(ledger)
    report.stale_writes = stale_writes()
    ours = {str(o["orderId"]) for o in ledger}
    trades = [t for t in exchange.trades() if str(t.order_id) in ours]
    report.fills = len(trades)
    recorded = set(Fill.objects.values_list("exchange_trade_id", flat=True))
    report.lost_fills = [str(t.trade_id) for t in trades if str(t.trade_id) not in recorded]
    balances = exchange.balances()
    for symbol in Symbol.objects.select_related("account"):
        base = symbol.symbol.split("/")[0]
        holding = sum((h for h in GridSlot.objects.filter(symbol=symbol).values_list("holding", flat=True)), D(0))
        if symbol.account.is_futures:  # the position equals the sum of the slots
            held = sim.futures.position(symbol.market_id).qty
            expected = holding + (symbol.position_offset or D(0))
        else:
            held = balances[base].free + balances[base].locked if base in balances else D(0)
            expected = holding + (symbol.base_offset or D(0))
        if held != expected:
            report.balance_mismatches.append(f"{base}: exchange {held}, ledger {expected}")
    live = Order.objects.filter(status__in=LIVE_STATUSES).count()
    open_at_exchange = sum(1 for o in ledger if o["status"] in ("NEW", "PARTIALLY_FILLED"))
    if live != open_at_exchange:
        report.mismatches.append(f"live orders: ledger {live}, exchange {open_at_exchange}")

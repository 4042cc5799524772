"""The bot process: one thread per symbol, a control thread (heartbeat, leases), status lines
and a graceful stop.

Threads, not asyncio: ccxt's synchronous client and the Django ORM are both blocking, each
symbol spends its time waiting on HTTP and the database, and one thread per symbol keeps each
loop a plain sequence of steps with its own exchange client and database connection. The GIL
is not a limit at these rates (a tick is milliseconds of CPU).

Single-instance mode (no-op lock) trades every selected symbol. Multi-instance mode trades a
symbol only while this instance holds its lease (`trading.leases`); the control thread starts
and stops symbol threads as leases are won, lost or handed over.
"""
from __future__ import annotations

import logging
import os
import socket
import threading
import time
import traceback
from collections import Counter
from dataclasses import dataclass, field
from typing import Callable

from django.db import close_old_connections, connection
from django.utils import timezone

import notifications
from locking import recorder
from locking.base import LockService
from quantmesh.version import __version__
from reconciliation.loop import LoopReconciler
from trading import liveness, metrics, services, summary
from trading.engine import LeaseLost, SymbolEngine, show
from trading.exchange.errors import ExchangeFailure, RateLimited
from trading.exchange.session import session_for
from trading.leases import LeaseKeeper
from trading.models import BotInstance, Symbol

log = logging.getLogger("quantmesh.runbot")

# Multi-instance mode: how soon the control loop tries again for a lease this instance should
# hold but found taken, and how long after a peer's heartbeat goes stale it looks again.
LEASE_RETRY_SECONDS = 0.2
STALE_MARGIN_SECONDS = 0.05


@dataclass
class BotOptions:
    instance_id: str
    tick_interval: float = 1.0
    status_interval: float = 10.0
    heartbeat_interval: float = 5.0
    cancel_on_exit: bool = False
    paper_url: str | None = None
    lock_backend: str = "nop"
    lease_ttl_ms: int = 10_000
    error_backoff: float = 5.0
    reconcile: bool = True  # each symbol's own reconcile pass every reconcile_interval
    streams: bool = True  # prices and fills from the exchange's WebSocket streams where it has them
    watch_interval: float = 5.0  # how often the control loop looks for what to tell the operator
    # Called after every tick of a symbol (a replay moves its simulator on); False stops the bot.
    after_tick: Callable[[], bool] | None = None


@dataclass
class SymbolRun:
    symbol: Symbol
    writer: services.Writer
    guard: Callable[[], bool] = lambda: True
    thread: threading.Thread | None = None
    engine: SymbolEngine | None = None
    reconciler: LoopReconciler | None = None
    ticks: int = 0
    errors: int = 0
    last_status: str = ""
    stopped_reason: str = ""
    ready: threading.Event = field(default_factory=threading.Event)
    stop: threading.Event = field(default_factory=threading.Event)


class Bot:
    """Runs the trading loops of a set of symbols until `stop()` is called."""

    def __init__(self, symbols: list[Symbol], locks: LockService, options: BotOptions, *,
                 out: Callable[[str], None] = print):
        self.symbols = symbols
        self.locks = locks
        self.options = options
        self.out = out
        self.stop_event = threading.Event()
        self.runs: dict[int, SymbolRun] = {}
        self.instance: BotInstance | None = None
        self.leases = LeaseKeeper(locks, options.instance_id, ttl_ms=options.lease_ttl_ms) if self.multi else None
        self._control: threading.Thread | None = None
        self._sessions: list = []  # sessions whose streams this bot started
        self._symbols_per_account = Counter(s.account_id for s in symbols)  # for the polling budget, per tick
        self.stop_reason = ""
        self._streams_down: dict[str, float] = {}  # account -> when its streams were first seen down
        self._streams_alerted: set[str] = set()  # accounts whose streams have been reported down
        self._next_watch = 0.0

    @property
    def multi(self) -> bool:
        return self.options.lock_backend != "nop"

    # --- lifecycle -----------------------------------------------------------------------------
    def start(self) -> None:
        self.instance = register_instance(self.options.instance_id, self.options.lock_backend)
        mode = "multi-instance" if self.multi else "single-instance"
        notifications.notify("bot_started", f"{self.options.instance_id} started ({mode}, version {__version__}): "
                             f"{', '.join(str(s) for s in self.symbols) or 'no symbols'}",
                             subject=self.options.instance_id)
        metrics.install()
        recorder.install(self.options.instance_id)
        if self.options.streams:
            self._start_streams()
        if not self.multi:
            for symbol in self.symbols:
                self._start_symbol(symbol, services.Writer(self.options.instance_id, symbol.fence_token))
        self._control = threading.Thread(target=self._control_loop, name="qm-control", daemon=True)
        self._control.start()

    def _start_streams(self) -> None:
        by_account: dict[int, list[Symbol]] = {}
        for symbol in self.symbols:
            by_account.setdefault(symbol.account_id, []).append(symbol)
        for symbols in by_account.values():
            try:
                session = session_for(symbols[0].account, paper_url=self.options.paper_url)
                streams = session.start_streams([s.symbol for s in symbols])
            except Exception as exc:  # no streams is a slower bot, never a stopped one
                log.error("%s: streams cannot start (%s): REST only", symbols[0].account.name, exc)
                continue
            if streams is not None:
                self._sessions.append(session)
                self.out(f"account {symbols[0].account.name}: prices and fills from the exchange's streams "
                         f"({len(symbols)} symbol(s)), REST checks them")
            else:
                self.out(f"account {symbols[0].account.name}: no streams here; polling by REST")

    def stop(self, reason: str = "") -> None:
        if reason and not self.stop_reason:
            self.stop_reason = reason
        self.stop_event.set()

    def join(self) -> None:
        for run in list(self.runs.values()):
            run.stop.set()
        for run in list(self.runs.values()):
            if run.thread is not None:
                run.thread.join()
        if self._control is not None:
            self._control.join()
        for session in self._sessions:
            session.stop_streams()
        if self.instance is not None:
            BotInstance.objects.filter(pk=self.instance.pk).update(stopped_at=timezone.now(), last_heartbeat=timezone.now())
            notifications.notify("bot_stopped", f"{self.options.instance_id} stopped: {self.stop_reason or 'asked to stop'}",
                                 subject=self.options.instance_id)
            notifications.close(timeout=10)
        connection.close()

    def run_until_stopped(self, duration: float | None = None) -> None:
        self.start()
        deadline = None if duration is None else time.monotonic() + duration
        next_status = time.monotonic() + self.options.status_interval
        while not self.stop_event.is_set():
            now = time.monotonic()
            if deadline is not None and now >= deadline:
                self.out(f"duration of {duration:g}s reached, stopping")
                self.stop(f"its duration of {duration:g}s was reached")
                break
            if now >= next_status:
                self.print_status()
                next_status = now + self.options.status_interval
            wait = min(0.5, next_status - now, (deadline - now) if deadline else 0.5)
            self.stop_event.wait(max(wait, 0.01))
        self.join()
        self.print_status()

    def feed_state(self) -> str:
        """Where prices and fills come from, per account: "streams", or why REST polls."""
        if not self._sessions:
            return "REST polling" + ("" if self.options.streams else " (streams off)")
        return "; ".join(f"{session.account.name}: {session.streams.status() or 'streams'}"
                         for session in self._sessions if session.streams is not None)

    def print_status(self) -> None:
        """One line per symbol (computed here, off the trading threads)."""
        if self.multi:
            held = ", ".join(sorted(r.symbol.symbol for r in self.runs.values() if not r.stop.is_set())) or "none"
            self.out(f"{self.options.instance_id}: leases held: {held}")
        budgets = {id(r.engine.gateway.budget): r.engine.gateway.budget for r in self.runs.values()
                   if r.engine is not None and r.engine.gateway.budget is not None}
        for budget in budgets.values():
            held = budget.status()
            if held:
                self.out(f"account {budget.name}: {held}")
        for session in self._sessions:
            if session.streams is not None and session.streams.status():
                self.out(f"account {session.account.name}: {session.streams.status()}")
        for run in list(self.runs.values()):
            if run.engine is not None:
                try:
                    run.last_status = run.engine.status().line()
                except Exception as exc:  # a status line must never stop the bot
                    run.last_status = f"{run.symbol.symbol}: status unavailable ({exc})"
            if run.last_status:
                reconcile = f"  {run.reconciler.summary()}" if run.reconciler is not None else ""
                self.out(run.last_status + reconcile + (f"  [{run.stopped_reason}]" if run.stopped_reason else ""))

    # --- symbol threads ------------------------------------------------------------------------
    def _start_symbol(self, symbol: Symbol, writer: services.Writer, guard: Callable[[], bool] = lambda: True) -> SymbolRun:
        run = SymbolRun(symbol=symbol, writer=writer, guard=guard)
        self.runs[symbol.pk] = run
        run.thread = threading.Thread(target=self._symbol_loop, args=(run,), name=f"qm-{symbol.symbol}", daemon=True)
        run.thread.start()
        return run

    def _stop_symbol(self, symbol_id: int, reason: str) -> None:
        """Stop one symbol's thread and wait for its current tick to end."""
        run = self.runs.pop(symbol_id, None)
        if run is None:
            return
        run.stopped_reason = reason
        run.stop.set()
        if run.thread is not None and run.thread is not threading.current_thread():
            run.thread.join()
        self.out(f"{run.symbol.symbol}: stopped trading ({reason})")

    def _symbol_loop(self, run: SymbolRun) -> None:
        name = run.symbol.symbol
        stopping = lambda: self.stop_event.is_set() or run.stop.is_set()  # noqa: E731
        try:
            keep_connection_open()
            engine = self._prepare(run, stopping)
            if engine is None:
                return
            next_due = time.monotonic()
            streak = 0  # failed ticks in a row
            while not stopping():
                started = time.monotonic()
                lag = started - next_due
                if not run.guard():
                    run.stopped_reason = "lease no longer valid"
                    log.error("%s: lease no longer valid; not trading", name)
                    return
                if engine.feed is not None:
                    engine.feed.wake.clear()  # an event from here on wakes the next wait
                try:
                    close_old_connections()
                    result = engine.tick()
                    run.ticks += 1
                    metrics.observe_tick(name, result, lag)
                    if result.error:
                        run.errors += 1
                    streak = self._error_streak(run, streak + 1 if result.error else 0, result.error)
                except LeaseLost as exc:
                    run.stopped_reason = f"lease lost: {exc}"
                    log.error("%s stopped: %s", name, run.stopped_reason)
                    notifications.notify("lease_lost", f"{self.options.instance_id} stopped trading {run.symbol}: "
                                         f"{run.stopped_reason}", subject=str(run.symbol))
                    return
                except Exception as exc:
                    # One bad tick must not kill the loop: log it and back off.
                    run.errors += 1
                    log.error("%s tick failed:\n%s", name, traceback.format_exc())
                    streak = self._error_streak(run, streak + 1, f"{type(exc).__name__}: {exc}")
                    run.stop.wait(self.options.error_backoff)
                    continue
                self._reconcile_if_due(run, engine)
                if self.options.after_tick is not None and not self.options.after_tick():
                    self.out(f"{name}: the replay has ended after {run.ticks} ticks, stopping")
                    self.stop("the replay has ended")
                    break
                next_due = started + self._tick_interval(engine)
                self._wait(run, engine, next_due)
            if self.options.cancel_on_exit and self.stop_event.is_set() and run.guard():
                canceled = engine.cancel_all()
                self.out(f"{name}: canceled {canceled} open order(s) on exit")
        finally:
            run.ready.set()
            connection.close()

    def _error_streak(self, run: SymbolRun, streak: int, error: str) -> int:
        """Tell the operator once when `error_streak` ticks in a row have failed."""
        wanted = notifications.error_streak()
        if streak == wanted:
            notifications.notify("exchange_errors", f"{run.symbol}: {streak} ticks in a row failed on "
                                 f"{self.options.instance_id}; the last: {error}"[:1000], subject=str(run.symbol))
        return streak

    def _wait(self, run: SymbolRun, engine: SymbolEngine, until: float) -> None:
        """Until the next tick is due, the bot stops, or (streaming) a fill or order event arrives."""
        feed = engine.feed
        if feed is None:
            run.stop.wait(max(0.0, until - time.monotonic()))
            return
        while not run.stop.is_set() and not self.stop_event.is_set():
            left = until - time.monotonic()
            if left <= 0 or feed.wake.wait(min(left, 0.1)):
                return

    def _tick_interval(self, engine: SymbolEngine) -> float:
        """The tick interval; while polling by REST, stretched so that all the account's symbols
        poll within its request budget (every instance is given the account's symbols, so they
        count them all)."""
        budget = engine.gateway.budget
        if budget is None or (engine.feed is not None and engine.feed.healthy()):
            return self.options.tick_interval
        return budget.tick_interval(self._symbols_per_account.get(engine.symbol.account_id, 1), self.options.tick_interval)

    def _reconcile_if_due(self, run: SymbolRun, engine: SymbolEngine) -> None:
        """The symbol's own reconcile pass, between two ticks, while this instance may trade it."""
        if run.reconciler is None or engine.symbol.status == Symbol.Status.STOPPED or not run.guard():
            return
        try:
            outcome = run.reconciler.run_if_due(now_wanted=engine.reconcile_wanted)
            if outcome is not None:
                engine.reconciled()
        except Exception:
            log.error("%s loop reconcile failed:\n%s", run.symbol.symbol, traceback.format_exc())
            return
        if outcome is not None and outcome.findings:
            self.out(f"{run.symbol.symbol}: reconcile {outcome.status}: "
                     + ", ".join(f"{f.kind} {f.action} {f.client_order_id}".rstrip() for f in outcome.findings))

    def _prepare(self, run: SymbolRun, stopping: Callable[[], bool]) -> SymbolEngine | None:
        name = run.symbol.symbol
        while not stopping():
            try:
                run.symbol.refresh_from_db()
                gateway = session_for(run.symbol.account, paper_url=self.options.paper_url).gateway()
                engine = SymbolEngine(run.symbol, gateway, self.locks, writer=run.writer, guard=run.guard)
                engine.prepare()
                problem = run.symbol.fee_problem(engine.last_price)
                if problem and run.symbol.status == Symbol.Status.RUNNING:
                    services.symbol_pause(run.symbol, reason=f"fee check: {problem}"[:200])
                    self.out(f"{name}: not trading: {problem}; set allow_unprofitable in the admin to trade it anyway")
                streams = session_for(run.symbol.account, paper_url=self.options.paper_url).streams
                if streams is not None:
                    engine.feed = streams.feeds.get(run.symbol.symbol)
                run.engine = engine
                if self.options.reconcile:
                    run.reconciler = LoopReconciler(run.symbol, gateway, self.locks, instance_id=self.options.instance_id,
                                                    writer=run.writer)
                s = run.symbol
                self.out(
                    f"{name}: trading on {s.account.name} ({gateway.exchange.id}), anchor {show(s.anchor_price)}, "
                    f"interval {show(s.price_interval)}, tick {show(s.tick_size)}, step {show(s.step_size)}, "
                    f"{s.buy_window_size} buys / {s.sell_window_size} sells of {show(s.order_quantity)} {engine.quote}"
                    + (f", lease token {run.writer.fence_token}" if self.multi else "")
                    + f", a tick every {self._tick_interval(engine):.2g}s"
                )
                run.ready.set()
                return engine
            except RateLimited as exc:
                run.errors += 1
                log.warning("%s start waits %.0fs: %s", name, exc.retry_after or self.options.error_backoff, exc)
                run.stop.wait(exc.retry_after or self.options.error_backoff)
            except ExchangeFailure as exc:
                run.errors += 1
                run.stopped_reason = f"cannot start: {exc}"
                log.error("%s cannot start: %s", name, exc)
                if "does not list" in str(exc) or "minimum notional" in str(exc):
                    notifications.notify("symbol_stopped", f"{run.symbol} not trading on {self.options.instance_id}: {exc}",
                                         subject=str(run.symbol))
                    run.ready.set()
                    return None
                run.stop.wait(self.options.error_backoff)
            except Exception:
                run.errors += 1
                log.error("%s start failed, retrying:\n%s", name, traceback.format_exc())
                run.stop.wait(self.options.error_backoff)
        return None

    # --- control: heartbeat and leases ---------------------------------------------------------
    def _control_loop(self) -> None:
        interval = self.options.heartbeat_interval
        if self.multi:
            interval = min(interval, self.options.lease_ttl_ms / 3000)
        next_prune = 0.0
        try:
            while True:
                wait = interval
                try:
                    assert self.instance is not None, "start() registers the instance first"
                    BotInstance.objects.filter(pk=self.instance.pk).update(last_heartbeat=timezone.now(),
                                                                           feed=self.feed_state()[:255])
                    if self.multi and not self.stop_event.is_set():
                        wait = min(wait, self._lease_cycle())
                    if time.monotonic() >= self._next_watch:
                        self._watch()
                        self._next_watch = time.monotonic() + self.options.watch_interval
                    if time.monotonic() >= next_prune:
                        recorder.prune()
                        next_prune = time.monotonic() + 3600
                except Exception:
                    log.error("control loop step failed:\n%s", traceback.format_exc())
                if self.stop_event.wait(wait):
                    break
        finally:
            if self.leases is not None:
                for sid in list(self.runs):
                    self._stop_symbol(sid, "shutting down")
                self.leases.release_all()
            connection.close()

    def _watch(self) -> None:
        """What the operator hears of without a trading loop noticing: instances gone silent,
        streams down past the threshold (and back), the daily summaries."""
        if not notifications.enabled():
            return
        liveness.report_silent(self.options.instance_id)
        threshold = notifications.stream_down_seconds()
        now = time.monotonic()
        for session in self._sessions:
            streams = session.streams
            if streams is None:
                continue
            name = session.account.name
            state = streams.status()  # empty while every symbol's feed is healthy
            if state:
                down = self._streams_down.setdefault(name, now)
                if now - down >= threshold and name not in self._streams_alerted:
                    self._streams_alerted.add(name)
                    notifications.notify("stream_down", f"account {name}: {state} on {self.options.instance_id} "
                                         f"for {now - down:.0f}s or more", subject=f"account {name}")
                continue
            self._streams_down.pop(name, None)
            if name in self._streams_alerted:
                self._streams_alerted.discard(name)
                notifications.notify("stream_back", f"account {name}: streams deliver again on {self.options.instance_id} "
                                     f"({streams.reconnects} reconnects so far)", subject=f"account {name}")
        summary.send_due({s.account_id: s.account for s in self.symbols}.values())

    def _lease_cycle(self) -> float:
        """Renew, hand over and take leases; return how soon the next cycle could take one over:
        just after another instance's heartbeat goes stale, or shortly when a lease this instance
        should hold is still held by another owner (who died and whose lease has not expired yet,
        or who has yet to hand it over). Otherwise takeover would wait up to a whole cycle (TTL / 3)
        after the lease expired, which is more than the 2 s the failover target leaves. A lock
        backend that fails keeps the cycle's own pace (and its log lines)."""
        leases = self.leases
        assert leases is not None, "leases exist in multi-instance mode, the only one with a lease cycle"
        for sid in leases.renew():
            self._stop_symbol(sid, "lease lost")
        # Threads that ended by themselves (fenced, lease invalid) give their lease back.
        for sid, run in list(self.runs.items()):
            if run.thread is not None and not run.thread.is_alive():
                self.runs.pop(sid, None)
                leases.release(sid)
        symbols = [s for s in self._current_symbols()]
        to_take, to_hand_over = leases.wanted(symbols)
        for sid in to_hand_over:
            self._stop_symbol(sid, "handed over to another instance")
            leases.release(sid)
        for symbol in to_take:
            lease = leases.acquire(symbol, symbol.account.exchange_id)
            if lease is not None:
                self._start_symbol(symbol, services.Writer(self.options.instance_id, lease.token), guard=lease.is_valid)
        soonest = LEASE_RETRY_SECONDS if leases.held_elsewhere else float("inf")
        if leases.next_stale is not None:
            soonest = min(soonest, (leases.next_stale - timezone.now()).total_seconds() + STALE_MARGIN_SECONDS)
        # Never sooner than the retry delay: a peer whose clock runs behind ours would otherwise
        # always look about to go stale and keep this loop spinning.
        return max(soonest, LEASE_RETRY_SECONDS)

    def _current_symbols(self) -> list[Symbol]:
        ids = [s.pk for s in self.symbols]
        return list(Symbol.objects.select_related("account").filter(pk__in=ids).exclude(status=Symbol.Status.STOPPED))


def keep_connection_open() -> None:
    """Let this thread keep its database connection from tick to tick, whatever CONN_MAX_AGE says.

    A symbol thread ticks every second for the life of the process: reconnecting each tick costs a
    connect (on PostgreSQL, a new server process) and, on SQLite, a fresh schema parse and page
    cache each time, which also fragments the heap. `close_old_connections()` still runs before
    each tick; with health checks on, it drops a connection that broke (a database restart) and
    the tick reconnects. Only this thread's connection wrapper is changed.
    """
    connection.settings_dict = {**connection.settings_dict, "CONN_MAX_AGE": None, "CONN_HEALTH_CHECKS": True}


class InstanceConflict(Exception):
    """Another single-instance bot is alive on the same database."""


def register_instance(instance_id: str, lock_backend: str) -> BotInstance:
    """Record this process. In single-instance mode (nop lock), refuse to start while another
    instance is alive on the same database: the no-op lock excludes nothing across processes."""
    now = timezone.now()
    if lock_backend == "nop":
        alive = liveness.alive_instances(now=now).exclude(instance_id=instance_id).first()
        if alive is not None:
            raise InstanceConflict(
                f"instance {alive.instance_id} (pid {alive.pid} on {alive.host}) is running in single-instance mode; "
                f"stop it first, or run several instances with QM_LOCK_BACKEND=redis"
            )
    instance, _ = BotInstance.objects.update_or_create(
        instance_id=instance_id,
        defaults=dict(
            host=socket.gethostname(), pid=os.getpid(), version=__version__, lock_backend=lock_backend,
            started_at=now, last_heartbeat=now, stopped_at=None,
        ),
    )
    return instance

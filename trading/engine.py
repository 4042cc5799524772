"""One symbol's trading loop step.

`SymbolEngine.tick()` does, in order:
1. read the symbol row (status and parameters may change from the admin at any time);
2. fetch the price;
3. apply new trades (fills) to the ledger and the slots, idempotently;
4. bring live ledger orders in line with the exchange (open orders, queries by client id);
5. unless paused: ask `trading.grid` for the orders the grid wants and place them through the
   intent ledger, each under its order lock; cancel buys the grid no longer wants.

Because fills are applied before the plan is made, a filled buy gets its sell in the same tick.
The engine talks to the gateway and the services only; it never holds a database transaction
across an exchange call.
"""
from __future__ import annotations

import logging
import time
from collections import Counter
from dataclasses import dataclass, field
from decimal import Decimal
from typing import TYPE_CHECKING, Callable

from django.db import IntegrityError
from django.utils import timezone

from locking.base import FENCED, Grant, LockBackendUnavailable, LockService, PendingGrant, record_event
from trading import faultpoints, grid, metrics, pnl, services
from trading.errors import FencedWrite
from trading.exchange import errors as xerr
from trading.exchange.gateway import ExchangeGateway
from trading.lockkeys import CANCEL_LOCK_TTL, ORDER_LOCK_TTL, cancel_lock_key, order_lock_key
from trading.models import LIVE_STATUSES, GridSlot, Order, OrderStatus, PositionSnapshot, Symbol
from trading.sync import LedgerSync, ms_to_datetime

if TYPE_CHECKING:
    from trading.exchange.streams import SymbolFeed

log = logging.getLogger("quantmesh.engine")

POST_ONLY_FALLBACK_AFTER = 3  # would-take rejects of one slot before it goes out as a plain limit
STALE_BUY_MARGIN = 2  # levels below the buy window before a live buy is cancelled


# A full trade sync runs at least this often, even when the open orders show nothing new.
FULL_TRADE_SYNC_SECONDS = 30.0
# While the streams deliver, open orders and trades are still checked by REST this often (and by
# the reconcile pass every reconcile_interval).
STREAM_SAFETY_SECONDS = 120.0


def trades_possible(live: list[Order], remote_open: list) -> bool:
    """Whether the exchange may hold trades the ledger has not seen: some live ledger order is no
    longer open there, or it reports more filled than the ledger has applied."""
    open_filled = {o.client_order_id: o.filled for o in remote_open}
    for order in live:
        filled = open_filled.get(order.client_order_id)
        if filled is None or filled != order.filled_amount:
            return True
    return False


def live_views(orders: list[Order]) -> list[grid.LiveOrderView]:
    return [
        grid.LiveOrderView(side=grid.BUY if o.side == grid.BUY else grid.SELL, level=o.level, price=o.price,
                           filled=o.filled_amount, ref=o.client_order_id)
        for o in orders if o.is_live
    ]


class LeaseLost(Exception):
    """This instance's fencing token is stale: another instance owns the symbol now."""


@dataclass
class TickResult:
    price: Decimal | None = None
    placed: list[str] = field(default_factory=list)
    canceled: list[str] = field(default_factory=list)
    rejected: list[str] = field(default_factory=list)
    placed_sides: Counter = field(default_factory=Counter)
    canceled_sides: Counter = field(default_factory=Counter)
    rejected_reasons: list[str] = field(default_factory=list)
    fills: int = 0
    conflicts: int = 0
    lock_errors: int = 0
    paused: bool = False
    error: str = ""


@dataclass
class SymbolStatus:
    """The compact numbers of a status line."""

    symbol: str
    price: Decimal | None
    open_buys: int
    open_sells: int
    filled_slots: int
    realized_pnl: Decimal
    fees_paid: Decimal
    status: str

    def line(self) -> str:
        price = "-" if self.price is None else show(self.price)
        return (
            f"{self.symbol:<10} {self.status:<7} price={price} buys={self.open_buys} sells={self.open_sells} "
            f"filled_slots={self.filled_slots} pnl={show(self.realized_pnl)} fees={show(self.fees_paid)}"
        )


def show(value: Decimal, places: int = 8) -> str:
    """A compact display of a Decimal: at most `places` decimals, no trailing zeros."""
    text = f"{value.quantize(Decimal(1).scaleb(-places)):f}"
    return text.rstrip("0").rstrip(".") if "." in text else text


class SymbolEngine:
    """Trades one symbol. Not thread-safe: one engine per thread, each with its own gateway."""

    # Set by prepare(), before the first tick.
    rules: grid.MarketRules
    lattice: grid.Lattice

    def __init__(
        self,
        symbol: Symbol,
        gateway: ExchangeGateway,
        locks: LockService,
        *,
        writer: services.Writer,
        guard: Callable[[], bool] = lambda: True,
        monotonic=time.monotonic,
    ):
        self.symbol = symbol
        self.market = symbol.symbol  # the exchange's name for it, e.g. "BTC/USDT"
        self.gateway = gateway
        self.locks = locks
        self.writer = writer
        self.guard = guard  # False once this instance may no longer trade the symbol (lease lost)
        self.monotonic = monotonic
        self.exchange_id = gateway.exchange.id
        self.base, self.quote = self.market.split("/")
        self.post_only_rejects: dict[tuple[int, str], int] = {}
        self.buys_paused_until = 0.0
        self.short_of_quote = False  # the streamed balance could not pay the last buy the grid wanted
        self.backoff_until = 0.0
        self.last_trade_ms: int | None = None
        self.next_full_trade_sync = 0.0
        self.last_price: Decimal | None = None
        self.ledger = LedgerSync(symbol, gateway, writer)
        self.feed: SymbolFeed | None = None  # the symbol's stream feed, when streaming
        self.feed_generation = 0
        self.next_safety_check = 0.0
        # USDⓈ-M futures: sells are reduce-only; what the exchange refuses as not reducing waits
        # for a reconcile pass instead of being written off; buys wait near the liquidation price.
        self.futures = gateway.dialect.futures
        self.reconcile_wanted = False
        self.held_sells: set[int] = set()  # levels whose reduce-only sell the exchange refused
        self.margin_locked = False  # a buy was refused for margin this tick: cancel the far buys
        self.near_liquidation = False
        self.leverage: int | None = None
        # What the last tick left: the grid's inputs (parameters, slots, live orders), for
        # `would_act`; None until a tick has planned.
        self.last_state: tuple[grid.GridParams, list[grid.SlotView], list[grid.LiveOrderView], bool] | None = None

    # --- start ---------------------------------------------------------------------------------
    def prepare(self) -> None:
        """Load the exchange's rules, anchor the lattice (once, persisted) and run the start-up
        position safety check. Raises `xerr.Rejected` when the exchange does not list the symbol."""
        rules = self.gateway.market_rules(self.market)
        if self.symbol.order_quantity < rules.min_notional:
            raise xerr.Rejected(
                f"{self.market}: order_quantity {show(self.symbol.order_quantity)} is below the exchange's "
                f"minimum notional {show(rules.min_notional)}"
            )
        services.symbol_store_market(
            self.symbol, tick_size=rules.tick_size, step_size=rules.step_size, min_notional=rules.min_notional
        )
        self.rules = grid.MarketRules(
            tick=rules.tick_size, step=rules.step_size, min_notional=rules.min_notional, min_qty=rules.min_amount
        )
        price = self.gateway.fetch_ticker(self.market).last
        self.last_price = price
        if self.symbol.anchor_price is None:
            services.symbol_anchor(self.symbol, price=grid.anchor_for(price, rules.tick_size))
        self.lattice = grid.Lattice(self.symbol.anchor_price, self.symbol.price_interval, rules.tick_size)
        latest = self.symbol.fills.order_by("-traded_at").values_list("traded_at", flat=True).first()
        self.last_trade_ms = int(latest.timestamp() * 1000) if latest else None
        if self.futures:
            self._futures_checks()
        else:
            self._position_safety_check()

    def _futures_checks(self) -> None:
        """Before trading a futures symbol, with or without a position: one-way mode; the margin
        mode and leverage the symbol asks for, set on the exchange; the exchange's leverage within
        max_leverage; and margin for position_safety_check grid buys. A failed check pauses the
        symbol with the reason."""
        problem = self._futures_problem()
        if problem:
            services.symbol_pause(self.symbol, reason=problem[:200])
            log.error("%s %s", self.market, problem)

    def _futures_problem(self) -> str:
        symbol = self.symbol
        if self.gateway.fetch_hedge_mode():
            return "hedge mode: QuantMesh trades one-way mode only; switch the account's position mode to one-way"
        try:
            if symbol.margin_mode:
                self.gateway.set_margin_mode(self.market, symbol.margin_mode)
            if symbol.leverage:
                self.gateway.set_leverage(self.market, symbol.leverage)
        except xerr.Rejected as exc:
            return f"could not set margin mode {symbol.margin_mode or '-'} / leverage {symbol.leverage or '-'}: {exc}"
        leverage, mode = self.gateway.fetch_leverage(self.market)
        self.leverage = leverage
        if symbol.margin_mode and mode != symbol.margin_mode:
            return f"margin mode is {mode} at the exchange, the symbol asks for {symbol.margin_mode}"
        if leverage > symbol.max_leverage:
            return f"leverage {leverage}x at the exchange is above max_leverage {symbol.max_leverage}x"
        needed = symbol.position_safety_check
        if needed:
            available = self.gateway.fetch_futures_account().available_balance
            affordable = int(available * leverage / symbol.order_quantity)
            if affordable < needed:
                return (f"position safety check: available {available} {self.quote} at {leverage}x buys {affordable} "
                        f"grid orders of {symbol.order_quantity}, fewer than position_safety_check={needed}")
        return ""

    def reconciled(self) -> None:
        """A reconcile pass ran: refused reduce-only sells may be tried again on what it found."""
        self.reconcile_wanted = False
        self.held_sells.clear()

    def _position_safety_check(self) -> None:
        needed = self.symbol.position_safety_check
        if not needed:
            return
        balances = self.gateway.fetch_balances()
        free_quote = balances[self.quote].free if self.quote in balances else Decimal(0)
        affordable = int(free_quote / self.symbol.order_quantity)
        if affordable < needed:
            reason = (
                f"position safety check: free {free_quote} {self.quote} buys {affordable} grid orders of "
                f"{self.symbol.order_quantity}, fewer than position_safety_check={needed}"
            )
            services.symbol_pause(self.symbol, reason=reason)
            log.error("%s %s", self.market, reason)

    # --- the loop step -------------------------------------------------------------------------
    def tick(self) -> TickResult:
        result = TickResult()
        # The account comes in the same query: the order path reads its client id prefix.
        self.symbol.refresh_from_db(from_queryset=Symbol.objects.select_related("account"))
        if self.symbol.status == Symbol.Status.STOPPED:
            result.paused = True
            return result
        if self.monotonic() < self.backoff_until or not self.guard():
            return result
        try:
            self._refresh_lattice()
            if self.feed is not None and self.feed.healthy():
                fills_before = result.fills
                live = self.sync_from_stream(result)
                streamed = self.feed.price  # set before the feed turns healthy, never unset
                # The sells of fills applied now are priced against a price at least as recent as
                # those fills: the streamed ticker may be older (another stream, or one that just
                # dropped), so then the price is read by REST.
                if streamed is not None and result.fills == fills_before and self.feed.healthy():
                    price = streamed
                else:
                    price = self.gateway.fetch_ticker(self.market).last
            else:
                live = self.sync_fills_and_orders(result)
                # The price is read after the fills, so the sells of what just filled are placed
                # against a price at least as recent as those fills.
                price = self.gateway.fetch_ticker(self.market).last
            result.price = self.last_price = price
            self._auto_resume()
            if self.symbol.status != Symbol.Status.RUNNING:
                result.paused = True
                return result
            if self._stop_loss_hit(price):
                result.paused = True
                return result
            if self.futures:
                self._watch_liquidation(price)
            self.place_wanted(price, result, live)
            if self.margin_locked:
                self._cancel_far_buys(price, result, live)
            self.cancel_unwanted(price, result, live)
            if self.last_state is not None:
                params, slots, _, paused = self.last_state
                self.last_state = (params, slots, live_views([o for o in live if o.is_live]), paused)
        except xerr.RateLimited as exc:
            wait = exc.retry_after or 5.0
            self.backoff_until = self.monotonic() + wait
            result.error = f"rate limited, backing off {wait:g}s"
            log.warning("%s %s", self.market, result.error)
        except (xerr.Ambiguous, xerr.Rejected) as exc:
            result.error = f"exchange: {exc}"
            log.warning("%s exchange error: %s", self.market, exc)
        except FencedWrite as exc:
            record_event(FENCED, f"fence:{self.exchange_id}:{self.market}", owner=self.writer.instance_id,
                         token=self.writer.fence_token, detail=str(exc)[:300])
            raise LeaseLost(str(exc)) from exc
        return result

    def _refresh_lattice(self) -> None:
        # The interval may be edited in the admin; the anchor never changes once set.
        if self.lattice.interval != self.symbol.price_interval:
            self.lattice = grid.Lattice(self.symbol.anchor_price, self.symbol.price_interval, self.rules.tick)

    def _auto_resume(self) -> None:
        until = self.symbol.paused_until
        if self.symbol.status == Symbol.Status.PAUSED and until is not None and until <= timezone.now():
            services.symbol_resume(self.symbol, by=f"its pause ended at {until:%Y-%m-%d %H:%M} UTC")

    # --- fills and order states ----------------------------------------------------------------
    def sync_fills_and_orders(self, result: TickResult) -> list[Order]:
        """Apply new fills, then bring live ledger orders in line with the exchange; return the
        orders still live.

        Only this symbol's own orders can trade, and every order is written to the ledger before
        it is sent, so while each live ledger order is open at the exchange with the amount the
        ledger has seen filled, no trade can be missing and the trades request is skipped. That
        leaves an idle tick with two requests (open orders, price) instead of three. A full trade
        sync still runs every `FULL_TRADE_SYNC_SECONDS` as a safety net.
        """
        live = self.ledger.live_orders()
        remote_open = self.gateway.fetch_open_orders(self.market) if live else []
        now = self.monotonic()
        if now >= self.next_full_trade_sync or trades_possible(live, remote_open):
            self.next_full_trade_sync = now + FULL_TRADE_SYNC_SECONDS
            result.fills += self.sync_trades()
            if result.fills:
                live = self.ledger.live_orders()
        return self.ledger.sync_orders(remote_open, live=live)

    def sync_trades(self) -> int:
        """Apply trades since the last one seen; returns how many were new."""
        applied = 0
        while True:
            trades = self.gateway.fetch_my_trades(self.market, since_ms=self.last_trade_ms, limit=1000)
            applied += self.apply_trades(trades)
            if len(trades) < 1000:
                return applied

    def apply_trades(self, trades: list) -> int:
        """Apply trades (from REST or a stream; each at most once); returns how many were new."""
        applied = 0
        for change in self.ledger.apply_trades(trades):
            applied += 1
            if change.order is not None and change.order.status == OrderStatus.FILLED:
                self.post_only_rejects.pop((change.order.level, change.order.side), None)
        if trades:
            newest = max(t.timestamp_ms for t in trades)
            self.last_trade_ms = max(self.last_trade_ms or 0, newest)
        return applied

    def sync_from_stream(self, result: TickResult) -> list[Order]:
        """Apply the fills the user-data stream delivered; return the live orders. Open orders and
        trades are checked by REST after every (re)connect of the streams, when an order ended at
        the exchange, and every `STREAM_SAFETY_SECONDS` (staggered by symbol), so an event lost
        while a stream was down, or swallowed, is found there."""
        feed = self.feed
        assert feed is not None, "sync_from_stream needs a stream feed"
        trades = [self.gateway.parse_trade(raw, self.market) for raw in feed.drain_trades()]
        if trades:
            result.fills += self.apply_trades(trades)
        now = self.monotonic()
        if feed.generation != self.feed_generation or feed.take_order_ended() or now >= self.next_safety_check:
            if feed.generation != self.feed_generation:
                log.info("%s: streams (re)connected: resyncing orders and trades by REST", self.market)
            self.feed_generation = feed.generation
            self.next_safety_check = now + STREAM_SAFETY_SECONDS + self.symbol.pk % 30  # staggered
            self.next_full_trade_sync = 0.0
            return self.sync_fills_and_orders(result)
        return self.ledger.live_orders()

    def resolve(self, order: Order) -> None:
        """A live ledger order that is not open at the exchange: ask the exchange by client id."""
        # That request may take up to the exchange timeout, as long as an order lock's TTL: a
        # release the order path deferred goes out first, before its lock can expire.
        self.locks.flush_deferred()
        self.ledger.resolve(order)

    # --- placing -------------------------------------------------------------------------------
    def plan(self, price: Decimal, live: list[Order]) -> grid.GridPlan:
        params = grid.GridParams(
            interval=self.symbol.price_interval,
            order_quantity=self.symbol.order_quantity,
            min_order_value=self.symbol.min_order_value,
            buy_window_size=self.symbol.buy_window_size,
            sell_window_size=self.symbol.sell_window_size,
            order_cleanup_threshold=self.symbol.order_cleanup_threshold,
            max_grid_layers=self.symbol.max_grid_layers,
        )
        slots = [
            grid.SlotView(level=level, holding=holding)
            for level, holding in GridSlot.objects.filter(symbol=self.symbol, holding__gt=0).values_list("level", "holding")
            if holding > 0  # on SQLite the filter compares text; this line keeps it exact
        ]
        paused = self.monotonic() < self.buys_paused_until or self.near_liquidation
        self.last_state = (params, slots, [], paused)
        return grid.desired_orders(params, self.rules, self.lattice, price, slots, live_views(live), buys_paused=paused)

    def would_act(self, price: Decimal) -> bool:
        """Whether a tick at `price` would place or cancel an order, judged on the state the last
        tick left (so valid only while nothing has filled or changed since): the same grid
        functions on the same inputs, without a request or a query. True when unknown."""
        if self.last_state is None:
            return True
        params, slots, views, paused = self.last_state
        if grid.desired_orders(params, self.rules, self.lattice, price, slots, views, buys_paused=paused).orders:
            return True
        return bool(self._unwanted(price, views))

    def _unwanted(self, price: Decimal, views: list[grid.LiveOrderView]) -> dict[str, grid.LiveOrderView]:
        """The live orders the grid no longer wants, by client order id: buys below the window,
        then what order_cleanup_threshold asks to cancel."""
        victims = {v.ref: v for v in grid.stale_buys(views, self.lattice, price, self.symbol.buy_window_size, STALE_BUY_MARGIN)}
        for v in self._cleanup(price, views):
            victims.setdefault(v.ref, v)
        return victims

    def _cleanup(self, price: Decimal, views: list[grid.LiveOrderView]) -> list[grid.LiveOrderView]:
        """Orders to cancel for order_cleanup_threshold: only those the grid will not place again."""
        if self.last_state is None or len(views) < self.symbol.order_cleanup_threshold:
            return []
        params, slots, _, paused = self.last_state
        return grid.lasting_cleanup(params, self.rules, self.lattice, price, slots, views,
                                    self.symbol.cleanup_batch_size, buys_paused=paused)

    def place_wanted(self, price: Decimal, result: TickResult, live: list[Order]) -> None:
        """Place what the grid wants; orders that went live are appended to `live`. Each order's
        lock release goes out with the next order's lock request; the last one when done."""
        free = self.feed.free(self.quote) if self.feed is not None else None
        try:
            for wanted in self.plan(price, live).orders:
                if wanted.side == grid.SELL and wanted.level in self.held_sells:
                    result.rejected_reasons.append("held_for_reconcile")
                    continue
                if wanted.side == grid.BUY and free is not None:
                    cost = wanted.price * wanted.amount
                    if cost > free:
                        # The exchange would refuse it, and a refused order still counts against
                        # the account's order limits: wait for the balance to change instead.
                        if not self.short_of_quote:
                            log.info("%s buys wait: level %s costs %s %s, the stream reports %s free",
                                     self.market, wanted.level, cost, self.quote, free)
                        self.short_of_quote = True
                        result.rejected_reasons.append("stream_balance")
                        continue
                    free -= cost
                    self.short_of_quote = False
                wait = self.gateway.take_order_slot()
                if wait:
                    log.info("%s order budget of the account spent; next orders in %.0fs", self.market, wait)
                    result.rejected_reasons.append("order_budget")
                    break
                order = self.place(wanted, result)
                if order is not None and order.is_live:
                    live.append(order)
        finally:
            self.locks.flush_deferred()

    def place(self, wanted: grid.DesiredOrder, result: TickResult) -> Order | None:
        """Place one order through the intent ledger, under its order lock.

        The lock is asked for first, and its answer is read once the intent row is committed: the
        round trip to the lock backend overlaps the database write instead of adding to it.
        Nothing is sent before the answer is in and says granted. An intent whose lock was not
        granted is withdrawn at once (NOT_PLACED): no request for it ever left this thread, the
        only one that could send it. Once the exchange has answered, the release is deferred: it
        goes out with this thread's next lock request, or at the latest when the caller calls
        `locks.flush_deferred()` (place_wanted does)."""
        if not self.guard():
            return None
        key = order_lock_key(self.exchange_id, self.market, wanted.level)
        try:
            pending = self.locks.request(key, ORDER_LOCK_TTL)
        except LockBackendUnavailable as exc:
            self._lock_unavailable(wanted.level, exc, result)
            return None
        post_only = self.post_only_rejects.get((wanted.level, wanted.side), 0) < POST_ONLY_FALLBACK_AFTER
        signed_at_ms = int(time.time() * 1000)
        try:
            order = self._write_intent(wanted, post_only, signed_at_ms)
        except BaseException:
            self._settle(pending)
            raise
        grant = self._lock_answer(pending, wanted.level, result)
        if grant is not None and order is not None and grant.is_valid() and self.guard():
            return self._send(order, wanted, post_only, signed_at_ms, grant, result)
        if grant is not None:
            self._release(grant)
        if order is not None:
            self._withdraw(order, "order lock expired or symbol lease lost before sending" if grant else "order lock not granted")
        return None

    def _lock_answer(self, pending: PendingGrant, level: int, result: TickResult) -> Grant | None:
        """The order lock's grant; None (counted and logged) when it is busy or the backend failed."""
        try:
            grant = pending.wait()
        except LockBackendUnavailable as exc:
            self._lock_unavailable(level, exc, result)
            return None
        if grant is None:
            result.conflicts += 1
            log.info("%s level %s: order lock busy, skipped this tick", self.market, level)
        return grant

    def _lock_unavailable(self, level: int, exc: LockBackendUnavailable, result: TickResult) -> None:
        result.lock_errors += 1
        log.error("%s lock backend unavailable, order for level %s not placed: %s", self.market, level, exc)

    def _settle(self, pending: PendingGrant) -> None:
        """Read a lock answer nobody will act on, and release what it granted."""
        try:
            grant = pending.wait()
        except LockBackendUnavailable:
            return
        if grant is not None:
            self._release(grant)

    def _write_intent(self, wanted: grid.DesiredOrder, post_only: bool, signed_at_ms: int) -> Order | None:
        """The PENDING intent row; None when the slot already has a live order (nothing to send)."""
        try:
            return services.order_create_intent(
                symbol=self.symbol, writer=self.writer, side=wanted.side, level=wanted.level, price=wanted.price,
                amount=wanted.amount, post_only=post_only, signed_at=ms_to_datetime(signed_at_ms),
            )
        except IntegrityError:
            log.info("%s level %s %s: slot already has a live order; not sending", self.market, wanted.level, wanted.side)
            return None

    def _withdraw(self, order: Order, reason: str) -> None:
        services.order_transition(order, OrderStatus.NOT_PLACED, writer=self.writer, note=f"not sent: {reason}")
        log.info("%s order %s withdrawn before sending: %s", self.market, order.client_order_id, reason)

    def _send(self, order: Order, wanted: grid.DesiredOrder, post_only: bool, signed_at_ms: int | None,
              grant: Grant, result: TickResult) -> Order:
        """Send the order and record the reply; releases the order lock."""
        cid = order.client_order_id
        try:
            try:
                faultpoints.reached("before_send")
                remote = self.gateway.create_limit_order(
                    symbol=self.market, side=wanted.side, amount=wanted.amount, price=wanted.price,
                    client_order_id=cid, post_only=post_only, signed_at_ms=signed_at_ms,
                    reduce_only=self.futures and wanted.side == grid.SELL,
                )
            finally:
                # Sent, refused or in doubt: from here the live intent row keeps the slot (a second
                # intent for it is refused by the database), so the lock is released before the
                # ledger records the reply, in the same message as the next order's lock request.
                self.locks.unlock_deferred(grant)
        except xerr.PostOnlyWouldTake as exc:
            count = self.post_only_rejects.get((wanted.level, wanted.side), 0) + 1
            self.post_only_rejects[(wanted.level, wanted.side)] = count
            self._reject(order, f"post-only would take ({count}/{POST_ONLY_FALLBACK_AFTER}): {exc}", result, "post_only")
            return order
        except xerr.InsufficientFunds as exc:
            self._reject(order, f"insufficient funds: {exc}", result, "insufficient_funds")
            if wanted.side == grid.BUY:
                self.buys_paused_until = self.monotonic() + self.symbol.margin_lock_duration_seconds
                self.margin_locked = self.futures
                log.warning("%s buys paused for %ss: insufficient %s", self.market,
                            self.symbol.margin_lock_duration_seconds, "margin" if self.futures else "funds")
            return order
        except xerr.ReduceOnlyRejected as exc:
            # The exchange's position is smaller than the ledger's slots: never write the holding
            # off here. The slot's sell waits for a reconcile pass, asked for now.
            self._reject(order, f"reduce-only refused: {exc}", result, "reduce_only")
            self.held_sells.add(wanted.level)
            self.reconcile_wanted = True
            log.warning("%s level %s: the exchange refused a reduce-only sell; the holding is kept and a "
                        "reconcile pass is asked for", self.market, wanted.level)
            return order
        except xerr.PositionModeMismatch as exc:
            self._reject(order, str(exc), result, "position_mode")
            services.symbol_pause(self.symbol, reason="hedge mode: switch the account's position mode to one-way")
            log.error("%s paused: the account is in hedge mode (%s)", self.market, exc)
            return order
        except xerr.DuplicateClientOrderId:
            # An open order already carries this id: it is ours. Adopt it.
            self.resolve(order)
            return order
        except xerr.RateLimited as exc:
            self._reject(order, f"rate limited: {exc}", result, "rate_limited")
            raise
        except xerr.Rejected as exc:
            self._reject(order, str(exc), result, "rejected")
            return order
        except xerr.Ambiguous as exc:
            services.order_transition(order, OrderStatus.UNKNOWN, writer=self.writer, note=f"ambiguous reply: {exc}"[:300],
                                      last_error=str(exc)[:300])
            log.warning("%s order %s: ambiguous reply (%s); resolving by client id", self.market, cid, exc)
            self.resolve(order)
            return order
        services.order_apply_exchange_state(order, remote, writer=self.writer)
        result.placed.append(cid)
        result.placed_sides[wanted.side] += 1
        log.info("%s placed %s %s %s @ %s%s", self.market, cid, wanted.side, wanted.amount, wanted.price,
                 "" if post_only else " (plain limit)")
        return order

    def _reject(self, order: Order, reason: str, result: TickResult, kind: str) -> None:
        services.order_transition(order, OrderStatus.REJECTED, writer=self.writer, note=reason[:300], last_error=reason[:300])
        result.rejected.append(order.client_order_id)
        result.rejected_reasons.append(kind)
        log.warning("%s order %s rejected: %s", self.market, order.client_order_id, reason)

    def _release(self, grant) -> None:
        # Nothing here acts on the outcome, so the lock service may send the release and read its
        # answer later instead of waiting a round trip; a lost lock is still logged and recorded.
        self.locks.unlock_nowait(grant)

    # --- cancelling ----------------------------------------------------------------------------
    def cancel_unwanted(self, price: Decimal, result: TickResult, live: list[Order]) -> None:
        by_ref = {o.client_order_id: o for o in live}
        for ref in self._unwanted(price, live_views(live)):
            order = by_ref[ref]
            if order.is_live and order.filled_amount == 0:
                self.cancel(order, result, reason="outside the grid window")

    def cancel(self, order: Order, result: TickResult | None = None, *, reason: str = "") -> bool:
        """Cancel one order under its cancel lock. True when the exchange confirmed the cancel."""
        key = cancel_lock_key(self.exchange_id, self.market, order.client_order_id)
        try:
            grant = self.locks.try_lock(key, CANCEL_LOCK_TTL)
        except LockBackendUnavailable as exc:
            if result is not None:
                result.lock_errors += 1
            log.error("%s lock backend unavailable, cancel of %s skipped: %s", self.market, order.client_order_id, exc)
            return False
        if grant is None:
            if result is not None:
                result.conflicts += 1
            return False
        try:
            services.order_mark_cancel_requested(order, writer=self.writer)
            try:
                remote = self.gateway.cancel_order(
                    self.market, exchange_order_id=order.exchange_order_id or None,
                    client_order_id=order.client_order_id,
                )
            except xerr.Ambiguous as exc:
                log.warning("%s cancel of %s ambiguous (%s); next sync resolves it", self.market, order.client_order_id, exc)
                return False
            if remote is None:
                self.resolve(order)
                return False
            services.order_apply_exchange_state(order, remote, writer=self.writer, note=f"canceled: {reason}")
            if result is not None:
                result.canceled.append(order.client_order_id)
                result.canceled_sides[order.side] += 1
            log.info("%s canceled %s (%s)", self.market, order.client_order_id, reason)
            return True
        finally:
            self._release(grant)

    def cancel_all(self) -> int:
        """Cancel every live order of the symbol (used on exit when asked)."""
        done = 0
        for order in Order.objects.filter(symbol=self.symbol, status__in=LIVE_STATUSES):
            if order.exchange_order_id or order.status != OrderStatus.PENDING:
                done += self.cancel(order, reason="shutdown")
        return done

    def _cancel_far_buys(self, price: Decimal, result: TickResult, live: list[Order]) -> None:
        """After a buy was refused for margin: cancel the live buys beyond the nearest half of the
        buy window, freeing their margin for the buys nearest the price."""
        self.margin_locked = False
        keep = max(1, self.symbol.buy_window_size // 2)
        buys = sorted((o for o in live if o.is_live and o.side == grid.BUY and o.filled_amount == 0),
                      key=lambda o: price - o.price)
        for order in buys[keep:]:
            self.cancel(order, result, reason="margin lock: freeing margin for the nearer buys")

    def _watch_liquidation(self, price: Decimal) -> None:
        """Pause buys while the price is within `liquidation_buffer` of the liquidation price the
        last reconcile pass read from the exchange; say so once when it starts and when it ends."""
        buffer = self.symbol.liquidation_buffer
        snapshot = PositionSnapshot.objects.filter(symbol=self.symbol).order_by("-taken_at", "-id").first()
        liquidation = snapshot.liquidation_price if snapshot is not None and snapshot.qty > 0 else None
        distance = (price - liquidation) / price if liquidation is not None and price > 0 else None
        metrics.LIQUIDATION_DISTANCE.labels(self.market).set(float(distance) if distance is not None else -1)
        near = bool(buffer) and distance is not None and distance < buffer
        if distance is not None and near and not self.near_liquidation:
            log.error("%s price %s is %.2f%% from the liquidation price %s (buffer %s%%): buys paused",
                      self.market, price, float(distance) * 100, liquidation, float(buffer) * 100)
        elif self.near_liquidation and not near:
            log.warning("%s price %s is clear of the liquidation buffer again: buys resume", self.market, price)
        self.near_liquidation = near

    # --- risk ----------------------------------------------------------------------------------
    def _stop_loss_hit(self, price: Decimal) -> bool:
        ratio = self.symbol.stop_loss_ratio
        if not ratio:
            return False
        holding = cost = Decimal(0)
        for h, c in GridSlot.objects.filter(symbol=self.symbol).values_list("holding", "cost"):
            holding += h
            cost += c
        value = holding * price
        if value <= 0:
            return False
        loss = (cost - value) / value
        if loss >= ratio:
            services.symbol_pause(self.symbol, reason=f"stop loss: unrealised loss {loss:.4f} of position value >= {ratio}")
            return True
        return False

    # --- reporting -----------------------------------------------------------------------------
    def status(self) -> SymbolStatus:
        live = Order.objects.filter(symbol=self.symbol, status__in=LIVE_STATUSES)
        slots = list(GridSlot.objects.filter(symbol=self.symbol).values_list("holding", "realized_pnl"))
        fees = Decimal(0)
        for fee, currency, price in self.symbol.fills.values_list("fee", "fee_currency", "price"):
            fees += pnl.fee_in_quote(fee=fee, fee_currency=currency, price=price, base=self.base, quote=self.quote)
        return SymbolStatus(
            symbol=self.market,
            price=self.last_price,
            open_buys=live.filter(side="buy").count(),
            open_sells=live.filter(side="sell").count(),
            filled_slots=sum(1 for holding, _ in slots if holding > 0),
            realized_pnl=sum((realized for _, realized in slots), Decimal(0)),
            fees_paid=fees,
            status=self.symbol.status,
        )


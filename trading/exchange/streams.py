"""An account's WebSocket streams through ccxt.pro: prices of all its symbols from one market
stream subscription, and fills, order changes and balances from the user-data stream, handed to
the symbol threads as events.

One asyncio thread per account owns the ccxt.pro client and runs one permanent loop per stream
(a ccxt.pro future resolves only while someone awaits it). The symbol threads never touch it:
each reads its `SymbolFeed` (latest price, pending trades, whether an order ended, a wake-up
event). The ORM stays in the symbol threads.

REST stays the source of truth when in doubt. A feed's `generation` grows whenever a stream
(re)connects, so the engine resyncs open orders and trades by REST after every (re)connect;
`healthy()` is false while a stream is down or the prices have been silent for `STALE_SECONDS`
(Binance pushes each ticker at least once a second), and the engine then polls by REST within the
account's budget. Where the account's user-data stream is comes from the exchange's dialect.
"""
from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections import deque
from decimal import Decimal
from typing import Any

log = logging.getLogger("quantmesh.streams")

STALE_SECONDS = 5.0
MAX_BACKOFF = 30.0


class SymbolFeed:
    """What the streams have for one symbol; read by its trading thread."""

    def __init__(self, symbol: str, hub: AccountStreams):
        self.symbol = symbol
        self.hub = hub
        self.wake = threading.Event()
        self._lock = threading.Lock()
        self._trades: deque = deque()
        self.price: Decimal | None = None
        self.price_at = 0.0  # monotonic, when a new ticker arrived
        self.price_stamp = None  # the exchange's time of that ticker
        self.order_ended = False  # an order was canceled or expired at the exchange
        self.trades_received = 0  # the user-data stream's trades for this symbol, duplicates included

    def healthy(self) -> bool:
        return self.hub.healthy() and self.price is not None and time.monotonic() - self.price_at < STALE_SECONDS

    @property
    def generation(self) -> int:
        return self.hub.generation

    def free(self, currency: str) -> Decimal | None:
        """The currency's free balance as the user-data stream last reported it; None when the
        streams are not healthy or have not reported it since they (re)connected."""
        if not self.hub.healthy():
            return None
        return self.hub.balances.get(currency)

    def drain_trades(self) -> list[dict]:
        with self._lock:
            trades, self._trades = list(self._trades), deque()
            return trades

    def take_order_ended(self) -> bool:
        with self._lock:
            ended, self.order_ended = self.order_ended, False
            return ended

    def _push_trade(self, trade: dict) -> None:
        with self._lock:
            self._trades.append(trade)
            self.trades_received += 1
        self.wake.set()

    def _order_changed(self, order: dict) -> None:
        if order.get("status") in ("canceled", "expired", "rejected"):
            with self._lock:
                self.order_ended = True
            self.wake.set()


class AccountStreams:
    """The streams of one account, in a thread of their own."""

    def __init__(self, name: str, make_exchange, symbols: list[str], dialect):
        self.name = name
        self.make_exchange = make_exchange  # () -> a ccxt.pro exchange, markets not loaded
        self.dialect = dialect  # the exchange's (trading.exchange.dialects): where its user stream is
        self.feeds = {symbol: SymbolFeed(symbol, self) for symbol in symbols}
        # ccxt's symbol (BTC/USDT:USDT on futures) -> the feed of ours (BTC/USDT)
        self._by_ccxt = {dialect.ccxt_symbol(symbol): feed for symbol, feed in self.feeds.items()}
        self.generation = 0
        self.reconnects = 0
        self.balances: dict[str, Decimal] = {}  # currency -> free, from `outboundAccountPosition`
        self._balance_seen: dict[str, object] = {}  # ccxt.pro's last answer, to tell new from cached
        self._up = {"market": False, "user": False}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._exchange: Any = None  # the ccxt.pro client, made on the stream thread

    def healthy(self) -> bool:
        return self._up["market"] and self._up["user"]

    def start(self) -> AccountStreams:
        self._thread = threading.Thread(target=self._run, name=f"qm-streams-{self.name}", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        loop = self._loop
        if loop is not None:
            loop.call_soon_threadsafe(lambda: [t.cancel() for t in asyncio.all_tasks(loop)])
        if self._thread is not None:
            self._thread.join(timeout=10)

    def status(self) -> str:
        """For status lines: empty while every symbol's feed is healthy. Also sets the metric."""
        from trading import metrics

        stale = [feed.symbol for feed in self.feeds.values() if not feed.healthy()]
        metrics.STREAMS_UP.labels(self.name).set(0 if stale else 1)
        if not stale:
            return ""
        down = [name for name, up in self._up.items() if not up]
        why = f"{', '.join(down)} down" if down else f"no price for {STALE_SECONDS:g}s"
        return f"streams down ({why}; {len(stale)} symbol(s)): polling by REST"

    # --- the asyncio side ------------------------------------------------------------------
    def _run(self) -> None:
        loop = self._loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        try:
            loop.run_until_complete(self._main())
        except BaseException as exc:  # cancelled on stop, or a bug: never take the bot down
            if not self._stop.is_set():
                log.error("%s: streams ended: %r", self.name, exc)
        finally:
            loop.close()

    async def _main(self) -> None:
        self._exchange = self.make_exchange()
        try:
            await self._with_retry("markets", self._exchange.load_markets, once=True)
            await asyncio.gather(self._keep("market", self._prices), self._keep("user", self._trades),
                                 self._keep("orders", self._orders), self._keep("balance", self._balance))
        finally:
            try:
                await self._exchange.close()
            except Exception:
                pass

    async def _with_retry(self, what: str, call, once: bool = False):
        delay = 1.0
        while not self._stop.is_set():
            try:
                return await call()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("%s: %s stream: %s; again in %.0fs", self.name, what, exc, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, MAX_BACKOFF)

    async def _keep(self, name: str, step) -> None:
        """Run `step()` forever; a failure marks the stream down until a step succeeds again."""
        delay = 1.0
        while not self._stop.is_set():
            try:
                await step()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if self._up.get(name, True):
                    log.warning("%s: %s stream down (%s): REST takes over", self.name, name, exc)
                if name != "market":
                    self.dialect.forget_user_stream(self._exchange)
                self._set(name, False)
                await asyncio.sleep(delay)
                delay = min(delay * 2, MAX_BACKOFF)
            else:
                delay = 1.0

    def _set(self, name: str, up: bool) -> None:
        if name not in self._up:
            return
        was = self.healthy()
        self._up[name] = up
        if not up:
            self.balances = {}  # what changed while the stream was down is unknown
        if up and not was and self.healthy():
            self.generation += 1  # (re)connected: the engines resync by REST
            if self.generation > 1:
                self.reconnects += 1
                log.warning("%s: streams back (reconnect %d); resyncing by REST", self.name, self.reconnects)
            for feed in self.feeds.values():
                feed.wake.set()

    async def _prices(self) -> None:
        await self._exchange.watch_tickers(list(self._by_ccxt))
        # The answer holds only the tickers of the message that resolved it; those that came
        # while nobody awaited are in the client's cache, with their own event times.
        now = time.monotonic()
        for symbol, ticker in list(self._exchange.tickers.items()):
            feed = self._by_ccxt.get(symbol)
            last = ticker.get("last") or ticker.get("close")
            stamp = ticker.get("timestamp")
            if feed is None or last is None or (stamp is not None and stamp == feed.price_stamp):
                continue
            feed.price, feed.price_at, feed.price_stamp = Decimal(str(last)), now, stamp
        self._set("market", True)
        if not self._up["user"]:
            # The user stream is up once its subscription answered; ccxt.pro subscribes on the first watch.
            client = self._user_client()
            if client is not None and client.connected.done() and not client.connected.exception():
                self._set("user", True)

    def _user_client(self):
        return self._exchange.clients.get(self.dialect.user_stream_url(self._exchange))

    async def _trades(self) -> None:
        for trade in await self._exchange.watch_my_trades():
            feed = self._by_ccxt.get(trade.get("symbol"))
            if feed is not None:
                feed._push_trade(trade)
        self._set("user", True)

    async def _orders(self) -> None:
        for order in await self._exchange.watch_orders():
            feed = self._by_ccxt.get(order.get("symbol"))
            if feed is not None:
                feed._order_changed(order)

    async def _balance(self) -> None:
        # Binance reports a currency's absolute free and locked amounts whenever an order or a fill
        # changes them. ccxt.pro answers with its whole cache, which outlives a reconnect: only a
        # currency whose amount changed counts as reported since the streams came back.
        balance = await self._exchange.watch_balance()
        if self.dialect.futures:
            return  # ACCOUNT_UPDATE gives the wallet, not what is free for a new order's margin
        for currency, free in (balance.get("free") or {}).items():
            if free is not None and self._balance_seen.get(currency) != free:
                self._balance_seen[currency] = free
                self.balances[currency] = Decimal(str(free))

"""Binance's WebSocket side of the simulator, in Binance's shapes, so ccxt.pro runs unchanged.

Spot:
- Market streams at `/ws/<anything>`: `{"method": "SUBSCRIBE", "params": ["btcusdt@ticker"], "id": 1}`
  is answered `{"result": null, "id": 1}`; then each subscribed `<id>@ticker` or `<id>@miniTicker`
  gets its raw 24-hour ticker on every price change and at least once a second, as Binance pushes.
- The WebSocket API at `/ws-api/v3`: `userDataStream.subscribe.signature` (HMAC-SHA256 over the
  sorted parameters, timestamp within recvWindow) subscribes to the account's user data:
  `executionReport` for every order change (NEW, TRADE, CANCELED, EXPIRED) and
  `outboundAccountPosition` after balance changes, each wrapped `{"subscriptionId", "event"}`.
  Connecting and subscribing cost 2 request weight each, as on Binance.

USDⓈ-M futures (when the simulator has a futures account), under `/fstream` as ccxt.pro derives
its URLs from one base: market streams at `/fstream/market/ws/...` (the same SUBSCRIBE, futures
tickers); user data at `/fstream/private/ws?listenKey=<key>`, the key from POST /fapi/v1/listenKey:
`ORDER_TRADE_UPDATE` for every order change (with the trade's realised PnL) and `ACCOUNT_UPDATE`
after fills (reason ORDER) and funding (FUNDING_FEE), unwrapped. A connection with a key that is
not the account's active one is refused; when the key expires or is closed, its connections get
`listenKeyExpired` and are closed, as on Binance.

The pump reads the engines every `PUMP_SECONDS` and sends what changed. Faults, for tests
(`/sim/streams/...`, on spot and futures alike): drop every connection; stall (connections stay
open, nothing is sent); terminate the user-data subscriptions (spot's `eventStreamTerminated`,
futures' listen key closed); and, for the next `count` user events (those with the fields of
`match`, when given), swallow them, duplicate them, or delay them by `ms` milliseconds (`release`
sends the delayed ones at once).
"""
from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import threading
import time
from dataclasses import dataclass, field
from decimal import Decimal
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

from aiohttp import WSMsgType, web

from .binance_api import fmt
from .futures import CROSSED
from .matching import CANCELED, EXPIRED, FILLED, NEW, PARTIALLY_FILLED, Engine, Order, Trade, now_ms

if TYPE_CHECKING:
    from .futures import FuturesEngine
    from .server import SimulatorServer

log = logging.getLogger("quantmesh.simulator.streams")

PUMP_SECONDS = 0.05
TICKER_EVERY_MS = 1000
EVENT_FAULTS = ("swallow", "duplicate", "delay")

# One order change as the pump saw it: (order, execution type, status, cumulative qty, trade or None).
Change = tuple[Order, str, str, Decimal, "Trade | None"]


@dataclass
class EventFault:
    """What happens to the next `count` user events that carry the fields of `match`."""

    kind: str  # swallow, duplicate or delay
    count: int
    match: dict = field(default_factory=dict)
    ms: int = 0

    def matches(self, event: dict) -> bool:
        inner = event["o"] if isinstance(event.get("o"), dict) else {}
        return all(event.get(k) == v or inner.get(k) == v for k, v in self.match.items())


class OrderTracker:
    """What the pump has told clients about one engine's orders and trades."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._trades_seen = len(engine.trades())
        self._orders_seen = {o.order_id: (o.status, o.executed_qty) for o in engine.orders()}

    def changes(self) -> list[Change]:
        orders = {o.order_id: o for o in self.engine.orders()}
        trades = self.engine.trades()
        out: list[Change] = []
        for order_id, order in orders.items():
            if order_id not in self._orders_seen:
                out.append((order, "NEW", NEW, Decimal(0), None))
                self._orders_seen[order_id] = (NEW, Decimal(0))
        cumulative = {order_id: seen[1] for order_id, seen in self._orders_seen.items()}
        for trade in trades[self._trades_seen:]:
            order = orders[trade.order_id]
            done = cumulative.get(trade.order_id, Decimal(0)) + trade.qty
            cumulative[trade.order_id] = done
            status = FILLED if done >= order.orig_qty else PARTIALLY_FILLED
            out.append((order, "TRADE", status, done, trade))
            self._orders_seen[trade.order_id] = (status, done)
        self._trades_seen = len(trades)
        for order_id, order in orders.items():
            status, done = self._orders_seen[order_id]
            if order.status in (CANCELED, EXPIRED) and status != order.status:
                out.append((order, order.status, order.status, done, None))
                self._orders_seen[order_id] = (order.status, done)
        return out


class SpotUserEvents:
    """The spot account's user data: `executionReport` and `outboundAccountPosition`."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.orders = OrderTracker(engine)
        self._balances_seen = {a: (b.free, b.locked) for a, b in engine.balances().items()}

    def events(self) -> list[dict]:
        events = [_execution_report(*change) for change in self.orders.changes()]
        balances = {a: (b.free, b.locked) for a, b in self.engine.balances().items()}
        changed = [a for a, v in balances.items() if self._balances_seen.get(a) != v]
        if changed:
            self._balances_seen = balances
            events.append({"e": "outboundAccountPosition", "E": now_ms(), "u": now_ms(),
                           "B": [{"a": a, "f": fmt(balances[a][0]), "l": fmt(balances[a][1])} for a in changed]})
        return events


class FuturesUserEvents:
    """The USDⓈ-M account's user data: `ORDER_TRADE_UPDATE` and `ACCOUNT_UPDATE`."""

    def __init__(self, engine: FuturesEngine) -> None:
        self.engine = engine
        self.orders = OrderTracker(engine)
        self._income_seen = len(engine.income())
        self._positions_seen = self._positions()
        self._wallet_seen = engine.account().wallet

    def _positions(self) -> dict[str, tuple[Decimal, Decimal]]:
        return {p.symbol: (p.qty, p.entry) for p in self.engine.positions()}

    def events(self) -> list[dict]:
        engine = self.engine
        events = []
        for order, execution, status, cumulative, trade in self.orders.changes():
            realized = engine.realized_pnl(trade.trade_id) if trade is not None else Decimal(0)
            events.append(_order_trade_update(order, execution, status, cumulative, trade, realized,
                                              engine.is_reduce_only(order.order_id)))
        income = engine.income()
        funded = income[self._income_seen:]
        self._income_seen = len(income)
        positions, wallet = self._positions(), engine.account().wallet
        moved = [s for s, v in positions.items() if self._positions_seen.get(s) != v]
        if moved or wallet != self._wallet_seen or funded:
            reason = "FUNDING_FEE" if funded and not moved else "ORDER"
            shown = moved or sorted({row.symbol for row in funded})
            views = {p.symbol: p for p in engine.positions()}
            now = now_ms()
            events.append({
                "e": "ACCOUNT_UPDATE", "E": now, "T": now,
                "a": {"m": reason,
                      "B": [{"a": "USDT", "wb": fmt(wallet), "cw": fmt(wallet), "bc": "0"}],
                      "P": [_position_update(views[s]) for s in shown if s in views]},
            })
            self._positions_seen, self._wallet_seen = positions, wallet
        return events


class StreamServer:
    def __init__(self, sim: SimulatorServer, host: str = "127.0.0.1", port: int = 0):
        self.sim = sim
        self.host = host
        self._requested_port = port
        self.port = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        # market connections -> (the engine whose tickers they get, their streams)
        self._market: dict[web.WebSocketResponse, tuple[Engine, set[str]]] = {}
        self._users: set[web.WebSocketResponse] = set()  # spot, over the WebSocket API
        self._futures_users: dict[web.WebSocketResponse, str] = {}  # futures -> their listen key
        self.stalled = False
        self._faults: list[EventFault] = []
        self._delayed: list[tuple[float, str, bool]] = []  # (due, text, futures)
        self.sent_user_events = 0
        self.swallowed = 0
        self.duplicated = 0
        self.delayed = 0
        self._spot_events: SpotUserEvents | None = None
        self._futures_events: FuturesUserEvents | None = None
        self._prices_sent: dict[tuple[int, str], tuple[Decimal, int]] = {}

    # ------------------------------------------------------------------ lifecycle

    @property
    def url(self) -> str:
        return f"ws://{self.host}:{self.port}"

    def start(self) -> StreamServer:
        # Start from the engines' present state: only what changes from now on is sent.
        self._spot_events = SpotUserEvents(self.sim.engine)
        if self.sim.futures is not None:
            self._futures_events = FuturesUserEvents(self.sim.futures)
        self._thread = threading.Thread(target=self._run, name="simulator-streams", daemon=True)
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("the stream server did not start")
        return self

    def stop(self) -> None:
        loop = self._loop
        if loop is None:
            return
        asyncio.run_coroutine_threadsafe(self._close_all(), loop).result(timeout=5)
        loop.call_soon_threadsafe(loop.stop)
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._loop = None

    def _run(self) -> None:
        loop = self._loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        app = web.Application()
        app.router.add_get("/ws-api/v3", self._ws_api)
        app.router.add_get("/ws/{tail:.*}", self._market_stream)
        app.router.add_get("/ws", self._market_stream)
        app.router.add_get("/fstream/private/ws", self._futures_user_stream)
        app.router.add_get("/fstream/{category}/ws", self._futures_market_stream)
        app.router.add_get("/fstream/{category}/ws/{tail:.*}", self._futures_market_stream)
        runner = web.AppRunner(app, access_log=None)
        loop.run_until_complete(runner.setup())
        site = web.TCPSite(runner, self.host, self._requested_port)
        loop.run_until_complete(site.start())
        server = site._server
        if not isinstance(server, asyncio.Server):
            raise RuntimeError("the WebSocket site did not start a TCP server")
        self.port = server.sockets[0].getsockname()[1]  # the port picked for port 0
        pump = loop.create_task(self._pump())
        self._ready.set()
        try:
            loop.run_forever()
        finally:
            pump.cancel()
            loop.run_until_complete(runner.cleanup())
            loop.close()

    # ------------------------------------------------------------------ faults

    def control(self, action: str, body: dict) -> dict:
        loop = self._loop
        if loop is None:
            raise ValueError("streams are not running")
        if action == "drop":
            asyncio.run_coroutine_threadsafe(self._close_all(), loop).result(timeout=5)
        elif action == "stall":
            self.stalled = bool(body.get("on", True))
        elif action == "terminate":
            asyncio.run_coroutine_threadsafe(self._terminate_users(), loop).result(timeout=5)
        elif action == "release":
            asyncio.run_coroutine_threadsafe(self._release(), loop).result(timeout=5)
        elif action in EVENT_FAULTS:
            try:
                fault = EventFault(action, int(body.get("count", 1)), dict(body.get("match") or {}),
                                   int(body.get("ms", 0)))
            except (TypeError, ValueError) as exc:
                raise ValueError(f"{action}: count and ms must be integers, match an object ({exc})") from None
            if fault.count < 1 or fault.ms < 0 or (action == "delay" and not fault.ms):
                raise ValueError(f"{action}: count must be at least 1" + (" and ms positive" if action == "delay" else ""))
            self._faults.append(fault)
        else:
            raise ValueError(f"unknown stream control {action!r}: drop, stall, terminate, swallow, duplicate, delay, "
                             "release")
        return self.state()

    def state(self) -> dict:
        return {"url": self.url, "marketConnections": len(self._market),
                "userSubscriptions": len(self._users) + len(self._futures_users), "stalled": self.stalled,
                "userEventsSent": self.sent_user_events, "swallowed": self.swallowed,
                "duplicated": self.duplicated, "delayed": self.delayed, "held": len(self._delayed)}

    async def _release(self) -> None:
        """Make every delayed event due: the pump sends them on its next round."""
        self._delayed = [(0.0, text, futures) for _, text, futures in self._delayed]

    async def _close_all(self) -> None:
        for ws in list(self._market) + list(self._users) + list(self._futures_users):
            await ws.close()
        self._market.clear()
        self._users.clear()
        self._futures_users.clear()

    async def _terminate_users(self) -> None:
        for ws in list(self._users):
            await ws.send_str(json.dumps({"subscriptionId": 0, "event": {"e": "eventStreamTerminated", "E": now_ms()}}))
        self._users.clear()
        if self.sim.futures is not None:
            self.sim.futures.close_listen_key()
            await self._expire_listen_keys()

    async def _expire_listen_keys(self) -> None:
        """Binance ends the stream of a key that expired or was closed: an event, then the close."""
        engine = self.sim.futures
        active = engine.listen_key() if engine is not None else None
        for ws, key in list(self._futures_users.items()):
            if key != active:
                self._futures_users.pop(ws, None)
                await _send(ws, json.dumps({"e": "listenKeyExpired", "E": now_ms(), "listenKey": key}))
                await ws.close()

    # ------------------------------------------------------------------ connections

    async def _market_stream(self, request: web.Request) -> web.WebSocketResponse:
        return await self._serve_market(request, self.sim.engine)

    async def _futures_market_stream(self, request: web.Request) -> web.StreamResponse:
        if self.sim.futures is None or request.match_info["category"] not in ("market", "public"):
            return web.Response(status=404, text="no such stream")
        return await self._serve_market(request, self.sim.futures)

    async def _serve_market(self, request: web.Request, engine: Engine) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(autoping=True, heartbeat=20)
        await ws.prepare(request)
        streams: set[str] = set()
        self._market[ws] = (engine, streams)
        try:
            async for data in _requests(ws):
                if data is None:
                    await ws.send_str(json.dumps({"error": {"code": 2, "msg": "Invalid JSON"}}))
                    continue
                method, params = data.get("method"), data.get("params") or []
                if method == "SUBSCRIBE":
                    streams.update(p.lower() for p in params)
                elif method == "UNSUBSCRIBE":
                    streams.difference_update(p.lower() for p in params)
                await ws.send_str(json.dumps({"result": None, "id": data.get("id")}))
                self._prices_sent.clear()  # a new subscriber gets every ticker at once
        finally:
            self._market.pop(ws, None)
        return ws

    async def _futures_user_stream(self, request: web.Request) -> web.StreamResponse:
        engine = self.sim.futures
        key = request.query.get("listenKey", "")
        if engine is None or not key or key != engine.listen_key():
            return web.json_response({"code": -1125, "msg": "This listenKey does not exist."}, status=400)
        ws = web.WebSocketResponse(autoping=True, heartbeat=20)
        await ws.prepare(request)
        self._futures_users[ws] = key
        try:
            async for _ in _requests(ws):
                pass  # the user stream takes no requests
        finally:
            self._futures_users.pop(ws, None)
        return ws

    async def _ws_api(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(autoping=True, heartbeat=20)
        await ws.prepare(request)
        self.sim.weights.charge(2)
        try:
            async for data in _requests(ws):
                if data is None:
                    continue
                reply = self._api_request(data)
                await ws.send_str(json.dumps(reply))
                if reply.get("status") == 200 and data.get("method") == "userDataStream.subscribe.signature":
                    self._users.add(ws)
        finally:
            self._users.discard(ws)
        return ws

    def _api_request(self, data: dict) -> dict:
        request_id, method, params = data.get("id"), data.get("method"), dict(data.get("params") or {})
        limits = [{"rateLimitType": "REQUEST_WEIGHT", "interval": "MINUTE", "intervalNum": 1,
                   "limit": self.sim.weights.limit, "count": self.sim.weights.used()}]
        if method != "userDataStream.subscribe.signature":
            return {"id": request_id, "status": 400, "error": {"code": -1100, "msg": f"Unknown method {method}"}}
        allowed, _, _ = self.sim.weights.charge(2)
        if not allowed:
            return {"id": request_id, "status": 429, "error": {"code": -1003, "msg": "Too much request weight used."}}
        signature = str(params.pop("signature", ""))
        payload = urlencode(sorted(params.items()))
        expected = hmac.new(self.sim.api_secret.encode(), payload.encode(), hashlib.sha256).hexdigest()
        if params.get("apiKey") != self.sim.api_key or not hmac.compare_digest(signature.lower(), expected):
            return {"id": request_id, "status": 400, "error": {"code": -1022, "msg": "Signature for this request is not valid."}}
        window = int(params.get("recvWindow") or 5000)
        if abs(now_ms() - int(params.get("timestamp") or 0)) > window:
            return {"id": request_id, "status": 400,
                    "error": {"code": -1021, "msg": "Timestamp for this request is outside of the recvWindow."}}
        return {"id": request_id, "status": 200, "result": {"subscriptionId": 0}, "rateLimits": limits}

    # ------------------------------------------------------------------ the pump

    async def _pump(self) -> None:
        while True:
            await asyncio.sleep(PUMP_SECONDS)
            if self.stalled:
                continue
            try:
                outgoing = self._user_texts()
                tickers = self._tickers()
            except Exception:
                log.exception("stream pump failed")
                continue
            for text, futures in outgoing:
                await self._deliver(text, futures)
            for ws, (engine, streams) in list(self._market.items()):
                for source, stream, payload in tickers:
                    if source is engine and stream in streams:
                        await _send(ws, json.dumps(payload))
            await self._expire_listen_keys()

    def _user_texts(self) -> list[tuple[str, bool]]:
        """The user events to send now, as (text, for futures), after the event faults."""
        events: list[tuple[dict, bool]] = []
        if self._spot_events is not None:
            events += [(event, False) for event in self._spot_events.events()]
        if self._futures_events is not None:
            events += [(event, True) for event in self._futures_events.events()]
        now = time.monotonic()
        out = [(text, futures) for due, text, futures in self._delayed if due <= now]
        self._delayed = [item for item in self._delayed if item[0] > now]
        for event, futures in events:
            text = json.dumps(event if futures else {"subscriptionId": 0, "event": event})
            fault = next((f for f in self._faults if f.matches(event)), None)
            if fault is not None:
                fault.count -= 1
                if fault.count <= 0:
                    self._faults.remove(fault)
                if fault.kind == "swallow":
                    self.swallowed += 1
                    continue
                if fault.kind == "delay":
                    self.delayed += 1
                    self._delayed.append((now + fault.ms / 1000, text, futures))
                    continue
                self.duplicated += 1
                out.append((text, futures))
            out.append((text, futures))
        return out

    async def _deliver(self, text: str, futures: bool) -> None:
        for ws in list(self._futures_users if futures else self._users):
            await _send(ws, text)
        self.sent_user_events += 1

    def _tickers(self) -> list[tuple[Engine, str, dict]]:
        now = now_ms()
        out: list[tuple[Engine, str, dict]] = []
        engines: list[Engine] = [self.sim.engine] + ([self.sim.futures] if self.sim.futures is not None else [])
        for engine in engines:
            futures = engine is not self.sim.engine
            for spec in engine.specs():
                price = engine.price(spec.symbol)
                key = (id(engine), spec.market_id)
                last = self._prices_sent.get(key)
                if last is not None and last[0] == price and now - last[1] < TICKER_EVERY_MS:
                    continue
                self._prices_sent[key] = (price, now)
                stream = spec.market_id.lower()
                ticker: dict[str, Any] = {
                    "e": "24hrTicker", "E": now, "s": spec.market_id, "p": "0", "P": "0", "w": fmt(price),
                    "c": fmt(price), "Q": "0", "o": fmt(price), "h": fmt(price), "l": fmt(price),
                    "v": "0", "q": "0", "O": now - 86_400_000, "C": now, "F": 0, "L": 0, "n": 0}
                if not futures:  # futures tickers carry no book and no previous close
                    ticker |= {"x": fmt(price), "b": fmt(price - spec.tick), "B": "1",
                               "a": fmt(price + spec.tick), "A": "1"}
                mini = {k: ticker[k] for k in ("E", "s", "c", "o", "h", "l", "v", "q")} | {"e": "24hrMiniTicker"}
                out += [(engine, f"{stream}@ticker", ticker), (engine, f"{stream}@miniticker", mini)]
        return out


def _execution_report(order: Order, execution: str, status: str, cumulative: Decimal,
                      trade: Trade | None = None) -> dict:
    now = now_ms()
    canceled = execution in (CANCELED, EXPIRED)
    return {
        "e": "executionReport", "E": now, "s": order.symbol,
        "c": f"web_cancel_{order.order_id}" if canceled else order.client_order_id,
        "S": order.side, "o": order.type, "f": order.time_in_force, "q": fmt(order.orig_qty), "p": fmt(order.price),
        "P": fmt(Decimal(0)), "F": fmt(Decimal(0)), "g": -1, "C": order.client_order_id if canceled else "",
        "x": execution, "X": status, "r": "NONE", "i": order.order_id,
        "l": fmt(trade.qty) if trade else fmt(Decimal(0)), "z": fmt(cumulative),
        "L": fmt(trade.price) if trade else fmt(Decimal(0)),
        "n": fmt(trade.commission) if trade else "0", "N": trade.commission_asset if trade else None,
        "T": trade.time if trade else now, "t": trade.trade_id if trade else -1, "I": order.order_id,
        "w": not canceled and status in (NEW, PARTIALLY_FILLED), "m": bool(trade.is_maker) if trade else False,
        "M": False, "O": order.time,
        "Z": fmt(order.cumm_quote_qty), "Y": fmt(trade.quote_qty) if trade else fmt(Decimal(0)),
        "Q": fmt(Decimal(0)), "W": order.time, "V": "NONE",
    }


def _order_trade_update(order: Order, execution: str, status: str, cumulative: Decimal, trade: Trade | None,
                        realized: Decimal, reduce_only: bool) -> dict:
    now = now_ms()
    average = order.cumm_quote_qty / order.executed_qty if order.executed_qty else Decimal(0)
    body: dict[str, Any] = {
        "s": order.symbol, "c": order.client_order_id, "S": order.side, "o": order.type, "f": order.time_in_force,
        "q": fmt(order.orig_qty), "p": fmt(order.price), "ap": fmt(average), "sp": "0", "x": execution, "X": status,
        "i": order.order_id, "l": fmt(trade.qty) if trade else "0", "z": fmt(cumulative),
        "L": fmt(trade.price) if trade else "0", "T": trade.time if trade else now,
        "t": trade.trade_id if trade else 0, "b": "0", "a": "0", "m": bool(trade.is_maker) if trade else False,
        "R": reduce_only, "wt": "CONTRACT_PRICE", "ot": order.type, "ps": "BOTH", "cp": False,
        "rp": fmt(realized), "pP": False, "si": 0, "ss": 0, "V": "EXPIRE_MAKER", "pm": "NONE", "gtd": 0,
    }
    if trade is not None:  # Binance pushes the commission only with a trade
        body |= {"N": trade.commission_asset, "n": fmt(trade.commission)}
    return {"e": "ORDER_TRADE_UPDATE", "E": now, "T": trade.time if trade else now, "o": body}


def _position_update(view) -> dict:
    return {"s": view.symbol, "pa": fmt(view.qty), "ep": fmt(view.entry), "bep": fmt(view.entry), "cr": "0",
            "up": fmt(view.unrealized), "mt": "cross" if view.margin_type == CROSSED else "isolated",
            "iw": fmt(view.isolated_wallet), "ps": "BOTH"}


async def _requests(ws: web.WebSocketResponse):
    """The client's text frames as JSON objects (None for one that is not JSON)."""
    async for msg in ws:
        if msg.type != WSMsgType.TEXT:
            continue
        try:
            data = json.loads(msg.data)
        except ValueError:
            yield None
            continue
        yield data if isinstance(data, dict) else None


async def _send(ws: web.WebSocketResponse, text: str) -> None:
    if ws.closed:
        return
    try:
        await ws.send_str(text)
    except (ConnectionError, RuntimeError):
        pass

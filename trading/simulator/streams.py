"""Binance's WebSocket side of the simulator, in Binance's shapes, so ccxt.pro runs unchanged.

- Market streams at `/ws/<anything>`: `{"method": "SUBSCRIBE", "params": ["btcusdt@ticker"], "id": 1}`
  is answered `{"result": null, "id": 1}`; then each subscribed `<id>@ticker` or `<id>@miniTicker`
  gets its raw 24-hour ticker on every price change and at least once a second, as Binance pushes.
- The WebSocket API at `/ws-api/v3`: `userDataStream.subscribe.signature` (HMAC-SHA256 over the
  sorted parameters, timestamp within recvWindow) subscribes to the account's user data:
  `executionReport` for every order change (NEW, TRADE, CANCELED, EXPIRED) and
  `outboundAccountPosition` after balance changes, each wrapped `{"subscriptionId", "event"}`.
  Connecting and subscribing cost 2 request weight each, as on Binance.

The pump reads the matching engine every `PUMP_SECONDS` and sends what changed. Faults, for
tests (`/sim/streams/...`): drop every connection, stall (connections stay open, nothing is
sent), end the user-data subscriptions (`eventStreamTerminated`), swallow the next N user events (those with the given fields, when `match` is given).
"""
from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import threading
from decimal import Decimal
from typing import TYPE_CHECKING
from urllib.parse import urlencode

from aiohttp import WSMsgType, web

from .binance_api import fmt
from .matching import CANCELED, EXPIRED, FILLED, NEW, PARTIALLY_FILLED, now_ms

if TYPE_CHECKING:
    from .server import SimulatorServer

log = logging.getLogger("quantmesh.simulator.streams")

PUMP_SECONDS = 0.05
TICKER_EVERY_MS = 1000


class StreamServer:
    def __init__(self, sim: SimulatorServer, host: str = "127.0.0.1", port: int = 0):
        self.sim = sim
        self.host = host
        self._requested_port = port
        self.port = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._market: dict[web.WebSocketResponse, set[str]] = {}
        self._users: set[web.WebSocketResponse] = set()
        self.stalled = False
        self._swallow = 0
        self._swallow_match: dict = {}  # only events with these fields are swallowed
        self.sent_user_events = 0
        self.swallowed = 0
        # what the pump has told clients so far
        self._trades_seen = 0
        self._orders_seen: dict[int, tuple[str, Decimal]] = {}
        self._balances_seen: dict[str, tuple[Decimal, Decimal]] = {}
        self._prices_sent: dict[str, tuple[Decimal, int]] = {}

    # ------------------------------------------------------------------ lifecycle

    @property
    def url(self) -> str:
        return f"ws://{self.host}:{self.port}"

    def start(self) -> StreamServer:
        self._prime()
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
        elif action == "swallow":
            self._swallow += int(body.get("count", 1))
            self._swallow_match = dict(body.get("match") or {})
        else:
            raise ValueError(f"unknown stream control {action!r}: drop, stall, terminate, swallow")
        return self.state()

    def state(self) -> dict:
        return {"url": self.url, "marketConnections": len(self._market), "userSubscriptions": len(self._users),
                "stalled": self.stalled, "userEventsSent": self.sent_user_events, "swallowed": self.swallowed}

    async def _close_all(self) -> None:
        for ws in list(self._market) + list(self._users):
            await ws.close()
        self._market.clear()
        self._users.clear()

    async def _terminate_users(self) -> None:
        for ws in list(self._users):
            await ws.send_str(json.dumps({"subscriptionId": 0, "event": {"e": "eventStreamTerminated", "E": now_ms()}}))
        self._users.clear()

    # ------------------------------------------------------------------ connections

    async def _market_stream(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(autoping=True, heartbeat=20)
        await ws.prepare(request)
        self._market[ws] = set()
        try:
            async for data in _requests(ws):
                if data is None:
                    await ws.send_str(json.dumps({"error": {"code": 2, "msg": "Invalid JSON"}}))
                    continue
                method, params = data.get("method"), data.get("params") or []
                if method == "SUBSCRIBE":
                    self._market[ws].update(p.lower() for p in params)
                elif method == "UNSUBSCRIBE":
                    self._market[ws].difference_update(p.lower() for p in params)
                await ws.send_str(json.dumps({"result": None, "id": data.get("id")}))
                self._prices_sent.clear()  # a new subscriber gets every ticker at once
        finally:
            self._market.pop(ws, None)
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

    def _prime(self) -> None:
        """Start from the engine's present state: only what changes from now on is sent."""
        engine = self.sim.engine
        self._trades_seen = len(engine.trades())
        self._orders_seen = {o.order_id: (o.status, o.executed_qty) for o in engine.orders()}
        self._balances_seen = {a: (b.free, b.locked) for a, b in engine.balances().items()}

    async def _pump(self) -> None:
        while True:
            await asyncio.sleep(PUMP_SECONDS)
            if self.stalled:
                continue
            try:
                user_events = self._user_events()
                tickers = self._tickers()
            except Exception:
                log.exception("stream pump failed")
                continue
            for event in user_events:
                if self._swallow > 0 and all(event.get(k) == v for k, v in self._swallow_match.items()):
                    self._swallow -= 1
                    self.swallowed += 1
                    continue
                text = json.dumps({"subscriptionId": 0, "event": event})
                for ws in list(self._users):
                    await _send(ws, text)
                self.sent_user_events += 1
            for ws, streams in list(self._market.items()):
                for stream, payload in tickers:
                    if stream in streams:
                        await _send(ws, json.dumps(payload))

    def _tickers(self) -> list[tuple[str, dict]]:
        now = now_ms()
        out = []
        engine = self.sim.engine
        for spec in engine.specs():
            price = engine.price(spec.symbol)
            last = self._prices_sent.get(spec.market_id)
            if last is not None and last[0] == price and now - last[1] < TICKER_EVERY_MS:
                continue
            self._prices_sent[spec.market_id] = (price, now)
            stream = spec.market_id.lower()
            ticker = {"e": "24hrTicker", "E": now, "s": spec.market_id, "p": "0", "P": "0", "w": fmt(price),
                      "x": fmt(price), "c": fmt(price), "Q": "0", "b": fmt(price - spec.tick), "B": "1",
                      "a": fmt(price + spec.tick), "A": "1", "o": fmt(price), "h": fmt(price), "l": fmt(price),
                      "v": "0", "q": "0", "O": now - 86_400_000, "C": now, "F": 0, "L": 0, "n": 0}
            mini = {k: ticker[k] for k in ("E", "s", "c", "o", "h", "l", "v", "q")} | {"e": "24hrMiniTicker"}
            out += [(f"{stream}@ticker", ticker), (f"{stream}@miniticker", mini)]
        return out

    def _user_events(self) -> list[dict]:
        engine = self.sim.engine
        orders = {o.order_id: o for o in engine.orders()}
        trades = engine.trades()
        events: list[dict] = []
        for order_id, order in orders.items():
            if order_id not in self._orders_seen:
                events.append(_execution_report(order, "NEW", NEW, Decimal(0)))
                self._orders_seen[order_id] = (NEW, Decimal(0))
        cumulative = {order_id: seen[1] for order_id, seen in self._orders_seen.items()}
        for trade in trades[self._trades_seen:]:
            order = orders[trade.order_id]
            done = cumulative.get(trade.order_id, Decimal(0)) + trade.qty
            cumulative[trade.order_id] = done
            status = FILLED if done >= order.orig_qty else PARTIALLY_FILLED
            events.append(_execution_report(order, "TRADE", status, done, trade))
            self._orders_seen[trade.order_id] = (status, done)
        self._trades_seen = len(trades)
        for order_id, order in orders.items():
            status, done = self._orders_seen[order_id]
            if order.status in (CANCELED, EXPIRED) and status != order.status:
                events.append(_execution_report(order, order.status, order.status, done))
                self._orders_seen[order_id] = (order.status, done)
        balances = {a: (b.free, b.locked) for a, b in engine.balances().items()}
        changed = [a for a, v in balances.items() if self._balances_seen.get(a) != v]
        if changed:
            self._balances_seen = balances
            events.append({"e": "outboundAccountPosition", "E": now_ms(), "u": now_ms(),
                           "B": [{"a": a, "f": fmt(balances[a][0]), "l": fmt(balances[a][1])} for a in changed]})
        return events


def _execution_report(order, execution: str, status: str, cumulative: Decimal, trade=None) -> dict:
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


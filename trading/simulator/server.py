"""The HTTP side of the simulator: Binance spot REST under `/api/v3/...`, USDⓈ-M futures under
`/fapi/...` (when a futures account is configured), control under `/sim/...`.

Standard library only: `ThreadingHTTPServer` with HTTP/1.1 keep-alive. The handler disables
Nagle's algorithm (TCP_NODELAY), so each reply on a kept-alive connection is sent at once instead
of waiting for the client's delayed ACK.
"""
from __future__ import annotations

import hashlib
import hmac
import json
import logging
import socket
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from email.message import Message
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any, Self
from urllib.parse import parse_qsl, urlsplit

from . import errors
from .binance_api import BinanceApi, Params, int_param
from .config import MarketSpec, SimConfig
from .control import ControlApi
from .errors import SimError
from .fapi import FapiApi, FuturesControl
from .faults import DropRule, FailRule, Faults, OrderMeter, WeightMeter
from .futures import FuturesConfig, FuturesEngine
from .matching import Engine, now_ms
from .pricepath import PricePath

if TYPE_CHECKING:
    from .streams import StreamServer

logger = logging.getLogger("trading.simulator")

DEFAULT_RECV_WINDOW_MS = 5000
MAX_RECV_WINDOW_MS = 60_000
MAX_BODY_BYTES = 1_000_000
SHUTDOWN_POLL_S = 0.05  # how often the accept loop checks for stop()

# Request headers: the HTTP handler passes its case-insensitive Message, callers may pass a dict.
Headers = Mapping[str, str] | Message


@dataclass
class Reply:
    status: int
    body: bytes = b""
    content_type: str = "application/json"
    headers: dict[str, str] = field(default_factory=dict)
    drop: bool = False  # close the connection without answering


def json_reply(status: int, payload: Any, headers: dict[str, str] | None = None) -> Reply:
    body = json.dumps(payload, separators=(",", ":")).encode()
    return Reply(status, body, headers=dict(headers or {}))


def parse_params(raw_query: str, raw_body: str) -> Params:
    """Query string and form body merged; a parameter sent twice is refused (-1101)."""
    params: Params = {}
    for raw in (raw_query, raw_body):
        for name, value in parse_qsl(raw, keep_blank_values=True):
            if name in params:
                raise SimError(errors.DUPLICATE_PARAM, "Duplicate values for a parameter detected.")
            params[name] = value
    return params


def signed_payload(raw_query: str, raw_body: str) -> str:
    """Binance's totalParams (query string then body, as sent) without the signature."""
    def strip(raw: str) -> str:
        return "&".join(p for p in raw.split("&") if p and not p.startswith("signature="))
    return strip(raw_query) + strip(raw_body)


class SimulatorServer:
    """A simulated Binance spot exchange served over HTTP on a background thread.

    `port=0` picks a free port; `base_url` is known after `start()`. The engine is shared by
    all requests and can be driven directly from the same process (`sim.engine.set_price`).
    """

    def __init__(self, config: SimConfig | None = None, host: str = "127.0.0.1", port: int = 0,
                 *, clock: Callable[[], int] = now_ms, streams: bool = False,
                 futures: FuturesConfig | None = None,
                 path_factory: Callable[[MarketSpec, int], PricePath] | None = None) -> None:
        self.config = config or SimConfig()
        self.with_streams = streams  # also serve Binance's WebSocket streams (trading.simulator.streams)
        self.streams: StreamServer | None = None
        self.host = host
        self._requested_port = port
        self._clock = clock
        self.engine = Engine(self.config, clock=clock, path_factory=path_factory)
        self.faults = Faults()
        self.weights = WeightMeter(self.config.weight_limit)
        self.orders = OrderMeter(self.config.order_limit_10s, self.config.order_limit_day)
        self.engine.trade_listeners.append(lambda trade: self.orders.filled(trade.order_id))
        self.api = BinanceApi(self.engine, lambda: self.weights.limit)
        self.control = ControlApi(self.engine, self.faults, self.weights, self.orders)
        self.spot = Venue(self.api, self.weights, self.orders, NEW_ORDER, FREE_WHEN_ACCEPTED, "1D")
        self.futures: FuturesEngine | None = None
        self.fapi: Venue | None = None
        if futures is not None:
            self.futures = FuturesEngine(futures, clock=clock)
            # Binance counts fapi's weight and orders apart from spot's (another host, other limits).
            fapi_orders = OrderMeter(futures.order_limit_10s, futures.order_limit_minute, long_window_s=60)
            fapi_weights = WeightMeter(futures.weight_limit)
            self.futures.trade_listeners.append(lambda trade: fapi_orders.filled(trade.order_id))
            self.fapi = Venue(FapiApi(self.futures, lambda: fapi_weights.limit), fapi_weights, fapi_orders,
                              FAPI_NEW_ORDER, FAPI_FREE_WHEN_ACCEPTED, "1M")
            self.futures_control = FuturesControl(self.futures)
        self._stopping = threading.Event()
        self._count_lock = threading.Lock()
        self.ticking = threading.Event()  # with tick_seconds: cleared, the prices stand still
        self.ticking.set()
        self.request_counts: dict[str, int] = {}  # requests received, by path (refused ones too)
        self._httpd: _HttpServer | None = None
        self._threads: list[threading.Thread] = []

    # ------------------------------------------------------------------ lifecycle

    @property
    def api_key(self) -> str:
        return self.config.api_key

    @property
    def api_secret(self) -> str:
        return self.config.api_secret

    @property
    def port(self) -> int:
        if self._httpd is None:
            raise RuntimeError("the simulator is not started")
        return self._httpd.server_address[1]

    @property
    def base_url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    def start(self) -> Self:
        """Bind and serve on background threads; returns self."""
        if self._httpd is not None:
            raise RuntimeError("the simulator is already started")
        self._stopping.clear()
        self._httpd = _HttpServer((self.host, self._requested_port), _Handler, self)
        httpd = self._httpd
        self._spawn("simulator-http", lambda: httpd.serve_forever(poll_interval=SHUTDOWN_POLL_S))
        if self.config.tick_seconds:
            self._spawn("simulator-ticker", self._auto_advance)
        if self.with_streams:
            from .streams import StreamServer

            self.streams = StreamServer(self, self.host).start()
        logger.info("simulator listening on %s", self.base_url)
        return self

    def stop(self) -> None:
        """Stop serving, close every connection, wait for the background threads."""
        httpd, self._httpd = self._httpd, None
        if httpd is None:
            return
        if self.streams is not None:
            self.streams.stop()
            self.streams = None
        self._stopping.set()
        httpd.shutdown()
        httpd.server_close()
        httpd.close_connections()
        for thread in self._threads:
            thread.join(timeout=5)
        self._threads.clear()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def _spawn(self, name: str, target: Callable[[], None]) -> None:
        thread = threading.Thread(target=target, name=name, daemon=True)
        thread.start()
        self._threads.append(thread)

    def _auto_advance(self) -> None:
        while not self._stopping.wait(self.config.tick_seconds):
            if not self.ticking.is_set():
                continue
            try:
                self.engine.step()
                if self.futures is not None:
                    self.futures.step()
            except Exception:  # keep the timer alive whatever happens
                logger.exception("price step failed")

    # ---------------------------------------------------------- test conveniences

    def reset(self) -> None:
        """Engine back to its configured start, faults cleared, weight budget as configured."""
        self.control.reset({})

    def set_latency(self, ms: int, path: str | None = None, method: str | None = None) -> None:
        self.faults.set_latency(ms, path, method)

    def fail_next(self, path: str | None = None, method: str | None = None, count: int = 1,
                  status: int = 503, code: int | None = None, msg: str = "Service Unavailable",
                  hang_ms: int = 0, execute: bool = False) -> None:
        """Answer the next `count` matching requests with an error (see faults.FailRule)."""
        self.faults.add_fail(FailRule(path, method.upper() if method else None, count, status,
                                      code, msg, hang_ms, execute))

    def drop_next(self, count: int = 1, path: str | None = "/api/v3/order",
                  method: str | None = "POST", mode: str = "close") -> None:
        """Execute the next `count` matching requests, then lose the reply (faults.DropRule)."""
        self.faults.add_drop(DropRule(path, method.upper() if method else None, count, mode))

    def clear_faults(self) -> None:
        self.faults.clear()

    # ----------------------------------------------------------- request handling

    def handle_api(self, method: str, path: str, raw_query: str, raw_body: str,
                   headers: Headers) -> Reply:
        """Answer one `/api/...` request, applying the injected faults."""
        with self._count_lock:
            self.request_counts[path] = self.request_counts.get(path, 0) + 1
        latency = self.faults.latency_ms(method, path)
        if latency:
            self._stopping.wait(latency / 1000)
        failure = self.faults.take_fail(method, path)
        if failure is not None and not failure.execute:
            return self._failure_reply(failure)
        reply = self._execute_api(method, path, raw_query, raw_body, headers)
        if failure is not None:
            return self._failure_reply(failure)
        drop = self.faults.take_drop(method, path)
        if drop is not None:
            if drop.mode == "504":
                return Reply(504, b"<html><body>504 Gateway Time-out</body></html>", "text/html")
            return Reply(0, drop=True)
        return reply

    def handle_control(self, method: str, path: str, raw_query: str, raw_body: str) -> Reply:
        if method == "GET":
            body: dict = dict(parse_qsl(raw_query))
        else:
            try:
                body = json.loads(raw_body) if raw_body.strip() else {}
            except ValueError as exc:
                return json_reply(400, {"error": f"body is not JSON: {exc}"})
            if not isinstance(body, dict):
                return json_reply(400, {"error": "body must be a JSON object"})
        if path.rstrip("/") == "/sim/streams" or path.startswith("/sim/streams/"):
            return self._stream_control(method, path, body)
        if path.rstrip("/") == "/sim/futures" or path.startswith("/sim/futures/"):
            if self.futures is None:
                return json_reply(404, {"error": "this simulator has no futures account"})
            action = path.rstrip("/").removeprefix("/sim/futures").lstrip("/")
            return json_reply(*self.futures_control.handle(method, action, body))
        status, payload = self.control.handle(method, path, body)
        return json_reply(status, payload)

    def _stream_control(self, method: str, path: str, body: dict) -> Reply:
        """GET /sim/streams: the WebSocket URL and counts (404 when not serving streams);
        POST /sim/streams/drop | stall {"on"} | terminate | swallow, duplicate {"count", "match"} |
        delay {"count", "match", "ms"}."""
        if self.streams is None:
            return json_reply(404, {"error": "this simulator serves no streams"})
        if method == "GET":
            return json_reply(200, self.streams.state())
        try:
            return json_reply(200, self.streams.control(path.rstrip("/").rsplit("/", 1)[-1], body))
        except ValueError as exc:
            return json_reply(400, {"error": str(exc)})

    def _execute_api(self, method: str, path: str, raw_query: str, raw_body: str,
                     headers: Headers) -> Reply:
        venue = self.fapi if path.startswith("/fapi/") else self.spot
        endpoint = venue.api.route(method, path) if venue is not None else None
        if venue is None or endpoint is None:
            return json_reply(404, {"code": errors.UNKNOWN, "msg": f"Unknown endpoint {method} {path}"})
        extra: dict[str, str] = {}
        try:
            weights = venue.weights
            banned = weights.ban_left()
            if banned:
                extra["Retry-After"] = str(banned)
                raise errors.ip_banned(int(weights.banned_until * 1000))
            params = parse_params(raw_query, raw_body)
            weight = endpoint.weight_of(params)
            allowed, used, retry_after = weights.charge(weight)
            extra["X-MBX-USED-WEIGHT-1M"] = str(used)
            if not allowed:
                extra["Retry-After"] = str(retry_after)
                raise errors.too_much_weight(weights.limit)
            if endpoint.signed:
                self._verify(headers, raw_query, raw_body, params)
            elif endpoint.api_key:
                self._verify_key(headers)
            if (method, path) == venue.new_order:
                return self._new_order(venue, endpoint, params, weight, extra)
            payload = endpoint.handler(venue.api, params)
            if (method, path) in venue.free_when_accepted:
                extra["X-MBX-USED-WEIGHT-1M"] = str(weights.refund(weight))
            return json_reply(200, payload, extra)
        except SimError as exc:
            return json_reply(exc.status, exc.payload(), extra)
        except Exception:
            logger.exception("simulator failed on %s %s", method, path)
            return json_reply(500, {"code": errors.UNKNOWN,
                                    "msg": "An unknown error occurred while processing the request."})

    def _new_order(self, venue: Venue, endpoint, params: Params, weight: int, extra: dict[str, str]) -> Reply:
        """An order request under the account's ORDERS limits; free of weight when accepted."""
        orders = venue.orders
        allowed, in_10s, in_long, wait = orders.take()
        if not allowed:
            extra["Retry-After"] = str(wait)
            limit, interval = ((orders.per_10s, "10 SECOND") if in_10s >= orders.per_10s
                               else (orders.per_day, "1 DAY" if venue.long_window == "1D" else "1 MINUTE"))
            raise errors.too_many_orders(limit, interval)
        try:
            payload = endpoint.handler(venue.api, params)
        except SimError:
            orders.give_back()
            raise
        orders.placed(int(payload["orderId"]))
        in_10s, in_long = orders.counts()
        extra["X-MBX-USED-WEIGHT-1M"] = str(venue.weights.refund(weight))
        extra["X-MBX-ORDER-COUNT-10S"] = str(in_10s)
        extra[f"X-MBX-ORDER-COUNT-{venue.long_window}"] = str(in_long)
        return json_reply(200, payload, extra)

    def _verify(self, headers: Headers, raw_query: str, raw_body: str,
                params: Params) -> None:
        """API key, HMAC-SHA256 signature and recvWindow, as Binance checks them."""
        self._verify_key(headers)
        timestamp = int_param(params, "timestamp")
        if timestamp is None:
            raise errors.mandatory("timestamp")
        signature = params.get("signature")
        if not signature:
            raise errors.mandatory("signature")
        expected = hmac.new(self.api_secret.encode(), signed_payload(raw_query, raw_body).encode(),
                            hashlib.sha256).hexdigest()
        if not hmac.compare_digest(signature.lower().encode(), expected.encode()):
            raise SimError(errors.INVALID_SIGNATURE, "Signature for this request is not valid.")
        recv_window = int_param(params, "recvWindow", DEFAULT_RECV_WINDOW_MS)
        if recv_window > MAX_RECV_WINDOW_MS:
            raise SimError(errors.INVALID_RECV_WINDOW,
                           f"recvWindow must be less than {MAX_RECV_WINDOW_MS}.")
        now = self._clock()
        if timestamp > now + 1000 or now - timestamp > recv_window:
            raise SimError(errors.TIMESTAMP_OUTSIDE_WINDOW,
                           "Timestamp for this request is outside of the recvWindow.")

    def _verify_key(self, headers: Headers) -> None:
        key = headers.get("X-MBX-APIKEY")
        if not key:
            raise SimError(errors.API_KEY_FORMAT, "API-key format invalid.", status=401)
        if not hmac.compare_digest(key.encode(), self.api_key.encode()):
            raise SimError(errors.REJECTED_API_KEY,
                           "Invalid API-key, IP, or permissions for action.", status=401)

    def _failure_reply(self, failure: FailRule) -> Reply:
        if failure.hang_ms:
            self._stopping.wait(failure.hang_ms / 1000)
        if failure.code is not None:
            return json_reply(failure.status, {"code": failure.code, "msg": failure.msg})
        return Reply(failure.status, failure.msg.encode(), "text/plain")


NEW_ORDER = ("POST", "/api/v3/order")
# Binance charges no weight for an order or cancel request that succeeds; failed ones pay.
FREE_WHEN_ACCEPTED = {("DELETE", "/api/v3/order"), ("DELETE", "/api/v3/openOrders")}
FAPI_NEW_ORDER = ("POST", "/fapi/v1/order")  # weight 0 on the IP limit; counts against ORDERS
FAPI_FREE_WHEN_ACCEPTED: set[tuple[str, str]] = set()


@dataclass(frozen=True)
class Venue:
    """One REST API with its own request-weight and order-count limits (spot, or USDⓈ-M futures)."""

    api: Any
    weights: WeightMeter
    orders: OrderMeter
    new_order: tuple[str, str]
    free_when_accepted: set[tuple[str, str]]
    long_window: str  # the longer ORDERS window as the count header names it: 1D or 1M


class _HttpServer(ThreadingHTTPServer):
    """Keeps track of open connections so `stop()` can close idle keep-alive sockets."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], handler: type, sim: SimulatorServer) -> None:
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        self.sim = sim
        self._connections: set[socket.socket] = set()
        self._connections_lock = threading.Lock()
        super().__init__(address, handler)

    def process_request(self, request, client_address) -> None:
        with self._connections_lock:
            self._connections.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request) -> None:
        with self._connections_lock:
            self._connections.discard(request)
        super().shutdown_request(request)

    def close_connections(self) -> None:
        with self._connections_lock:
            connections = list(self._connections)
        for connection in connections:
            try:
                connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True
    server_version = "QuantMeshSim/1.0"
    sys_version = ""
    server: _HttpServer

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def do_DELETE(self) -> None:
        self._dispatch("DELETE")

    def do_PUT(self) -> None:
        self._dispatch("PUT")

    def log_message(self, format: str, *args: Any) -> None:
        logger.debug("%s %s", self.address_string(), format % args)

    def _dispatch(self, method: str) -> None:
        body = self._read_body()
        if body is None:
            return
        split = urlsplit(self.path)
        sim = self.server.sim
        if split.path.startswith("/sim/"):
            reply = sim.handle_control(method, split.path, split.query, body)
        elif split.path.startswith(("/api/", "/fapi/")):
            reply = sim.handle_api(method, split.path, split.query, body, self.headers)
        else:
            reply = json_reply(404, {"error": f"unknown path {split.path}"})
        self._send(reply)

    def _read_body(self) -> str | None:
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            length = -1
        if not 0 <= length <= MAX_BODY_BYTES:
            self._send(json_reply(400, {"code": errors.UNKNOWN, "msg": "Bad Content-Length."}))
            self.close_connection = True
            return None
        return self.rfile.read(length).decode("utf-8", errors="replace") if length else ""

    def _send(self, reply: Reply) -> None:
        if reply.drop:
            self.close_connection = True
            return
        try:
            self.send_response(reply.status)
            self.send_header("Content-Type", reply.content_type)
            self.send_header("Content-Length", str(len(reply.body)))
            for name, value in reply.headers.items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(reply.body)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True

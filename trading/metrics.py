"""Prometheus metrics of the trading loops, and the /metrics server of `runbot`."""
from __future__ import annotations

from prometheus_client import REGISTRY, Counter, Gauge, Histogram, start_http_server


def get_or_create(kind, name: str, documentation: str, labels: tuple[str, ...], **kwargs):
    """The metric `name`, created on first use: importing a module twice (tests, autoreload) must
    not fail with a duplicate registration."""
    existing = REGISTRY._names_to_collectors.get(name)
    if existing is not None:
        return existing
    return kind(name, documentation, labels, **kwargs)


ORDERS_PLACED = get_or_create(Counter, "quantmesh_orders_placed_total", "Orders accepted by the exchange.", ("symbol", "side"))
ORDERS_CANCELED = get_or_create(Counter, "quantmesh_orders_canceled_total", "Orders canceled.", ("symbol", "side"))
ORDERS_REJECTED = get_or_create(Counter, "quantmesh_orders_rejected_total", "Orders rejected, by reason.", ("symbol", "reason"))
FILLS = get_or_create(Counter, "quantmesh_fills_total", "Trades applied to the ledger.", ("symbol", "side"))
EXCHANGE_LATENCY = get_or_create(
    Histogram, "quantmesh_exchange_request_seconds", "Exchange request latency by method.", ("exchange", "method"),
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
EXCHANGE_ERRORS = get_or_create(
    Counter, "quantmesh_exchange_errors_total", "Exchange requests that failed, by error kind.", ("exchange", "method", "kind")
)
TICKS = get_or_create(Counter, "quantmesh_ticks_total", "Trading loop ticks run.", ("symbol",))
EXCHANGE_GATE_CLOSED = get_or_create(
    Counter, "quantmesh_exchange_gate_closed_total",
    "Times the exchange answered 429, 418 or 403 and every request of the account was held back.", ("account", "status"),
)
EXCHANGE_WEIGHT_USED = get_or_create(
    Gauge, "quantmesh_exchange_weight_used", "Request weight used this minute, as the account's budget counts it.", ("account",)
)
STREAMS_UP = get_or_create(
    Gauge, "quantmesh_streams_up", "1 while the account's WebSocket streams deliver for every symbol, 0 while REST polls.",
    ("account",),
)
LIQUIDATION_DISTANCE = get_or_create(
    Gauge, "quantmesh_liquidation_distance_ratio",
    "Futures: (price - liquidation price) / price of the symbol's long position; -1 without one.", ("symbol",),
)
LOOP_LAG = get_or_create(Gauge, "quantmesh_loop_lag_seconds", "How late the last tick started.", ("symbol",))
# The same lag over all symbols of the process, as a distribution: its p99 is the figure to watch
# (a tick starts late when the previous one overran the tick interval or the process is saturated).
TICK_LAG = get_or_create(
    Histogram, "quantmesh_tick_lag_seconds", "How late ticks started, all symbols of this process.", (),
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10),
)


def observe_exchange_request(exchange: str, method: str, seconds: float, error: str | None) -> None:
    EXCHANGE_LATENCY.labels(exchange, method).observe(seconds)
    if error is not None:
        EXCHANGE_ERRORS.labels(exchange, method, error).inc()


def install() -> None:
    """Record exchange requests of this process in the metrics above."""
    from trading.exchange.gateway import set_request_observer

    set_request_observer(observe_exchange_request)


def observe_tick(symbol: str, result, lag: float) -> None:
    """Count what one tick did."""
    lag = max(lag, 0.0)
    TICKS.labels(symbol).inc()
    LOOP_LAG.labels(symbol).set(lag)
    TICK_LAG.observe(lag)
    for side, count in result.placed_sides.items():
        ORDERS_PLACED.labels(symbol, side).inc(count)
    for side, count in result.canceled_sides.items():
        ORDERS_CANCELED.labels(symbol, side).inc(count)
    for reason in result.rejected_reasons:
        ORDERS_REJECTED.labels(symbol, reason).inc()
    if result.fills:
        FILLS.labels(symbol, "any").inc(result.fills)


def serve_metrics(port: int, addr: str = "127.0.0.1") -> int:
    """Serve /metrics for this process; port 0 picks a free port. Returns the port."""
    install()
    result = start_http_server(port, addr=addr)
    server = result[0] if isinstance(result, tuple) else None
    return server.server_port if server is not None else port

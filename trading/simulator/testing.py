"""Helpers for code that points real ccxt at a running simulator (tests, demos, benchmarks).

ccxt (and the exchange layer's Binance dialect, which says how a client is kept to spot and
pointed at a compatible server) is imported lazily, so the simulator itself runs without it.
"""
from __future__ import annotations

from typing import Any

from .server import SimulatorServer


def ccxt_client(target: SimulatorServer | str, api_key: str | None = None,
                api_secret: str | None = None, *, timeout_ms: int = 3000, **options: Any):
    """A `ccxt.binance` client that talks only to the simulator, kept to spot and with Binance's
    spot error table, so errors map to the same ccxt classes as against the real host.

    `target` is a started SimulatorServer or a base URL. Keys default to the server's (or
    the simulator defaults for a URL). `options` are added to the client's ccxt options.
    """
    import ccxt

    from trading.exchange.dialects import BINANCE_SPOT

    if isinstance(target, SimulatorServer):
        base_url = target.base_url
        api_key = target.api_key if api_key is None else api_key
        api_secret = target.api_secret if api_secret is None else api_secret
    else:
        from .config import DEFAULT_API_KEY, DEFAULT_API_SECRET

        base_url = target
        api_key = DEFAULT_API_KEY if api_key is None else api_key
        api_secret = DEFAULT_API_SECRET if api_secret is None else api_secret
    exchange = ccxt.binance({
        "apiKey": api_key,
        "secret": api_secret,
        "enableRateLimit": False,
        "timeout": timeout_ms,
        "options": {**BINANCE_SPOT.market_options(), **options},
    })
    BINANCE_SPOT.point_at(exchange, base_url)
    return exchange

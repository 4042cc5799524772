"""A real ccxt client kept to a local Binance-compatible server, such as the simulator: for tests,
demos and benchmarks that drive ccxt directly rather than through the gateway.

The client is built from the Binance spot dialect (kept to spot, pointed at the server, with
Binance's spot error table), so errors map to the same ccxt classes as against the real host.
"""
from __future__ import annotations

from typing import Any, Protocol

from trading.exchange.accounts import PAPER_API_KEY, PAPER_API_SECRET
from trading.exchange.dialects import BINANCE_SPOT


class Server(Protocol):
    @property
    def base_url(self) -> str: ...

    @property
    def api_key(self) -> str: ...

    @property
    def api_secret(self) -> str: ...


def ccxt_client(target: Server | str, api_key: str | None = None, api_secret: str | None = None, *,
                timeout_ms: int = 3000, **options: Any):
    """A `ccxt.binance` client that talks only to `target` (a started server, or its base URL).
    Keys default to the server's, or the paper account's for a URL; `options` are added to the
    client's ccxt options."""
    import ccxt

    if isinstance(target, str):
        base_url = target
        key, secret = PAPER_API_KEY, PAPER_API_SECRET
    else:
        base_url, key, secret = target.base_url, target.api_key, target.api_secret
    exchange = ccxt.binance({
        "apiKey": key if api_key is None else api_key,
        "secret": secret if api_secret is None else api_secret,
        "enableRateLimit": False,
        "timeout": timeout_ms,
        "options": {**BINANCE_SPOT.market_options(), **options},
    })
    BINANCE_SPOT.point_at(exchange, base_url)
    return exchange

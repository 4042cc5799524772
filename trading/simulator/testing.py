"""Helpers for code that points real ccxt at a running simulator (tests, demos, benchmarks).

ccxt is imported lazily so the simulator itself keeps working without it.
"""
from __future__ import annotations

from typing import Any

from .server import SimulatorServer


def spot_urls(base_url: str) -> dict[str, str]:
    """ccxt.binance `urls['api']` with only the spot sections, all on `base_url`.

    Any sapi/fapi/dapi call then fails locally with ccxt.NotSupported, so nothing can reach a
    real Binance host.
    """
    base_url = base_url.rstrip("/")
    return {"public": base_url + "/api/v3", "private": base_url + "/api/v3",
            "v1": base_url + "/api/v1"}


def ccxt_client(target: SimulatorServer | str, api_key: str | None = None,
                api_secret: str | None = None, *, timeout_ms: int = 3000,
                spot_errors: bool = True, **options: Any):
    """A `ccxt.binance` client that talks only to the simulator.

    `target` is a started SimulatorServer or a base URL. Keys default to the server's (or
    the simulator defaults for a URL). `spot_errors` merges Binance's spot error table into
    the generic one, so errors map to the same ccxt classes as against the real host.
    """
    import ccxt

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
        "options": {
            "defaultType": "spot",
            "fetchCurrencies": False,
            "fetchMargins": False,
            "fetchMarkets": {"types": ["spot"]},
            **options,
        },
    })
    exchange.urls["api"] = spot_urls(base_url)
    if spot_errors:
        exchange.exceptions["exact"] = {**exchange.exceptions["exact"],
                                        **exchange.exceptions["spot"]["exact"]}
    return exchange

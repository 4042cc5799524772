"""Fixtures for the exchange simulator tests: a running simulator, a real ccxt client on it,
and a small raw HTTP client for what ccxt cannot send (bad keys, unrounded prices)."""
from __future__ import annotations

import hashlib
import hmac
import json
import time
import urllib.error
import urllib.request
from decimal import Decimal
from typing import Any
from urllib.parse import urlencode

import pytest

from trading.exchange.local import ccxt_client
from trading.simulator import MarketSpec, SimConfig, SimulatorServer


def btc_market(**overrides: Any) -> MarketSpec:
    args: dict[str, Any] = {"price": Decimal("60000"), "tick": Decimal("0.01"),
                            "step": Decimal("0.00001"), "min_notional": Decimal("5")}
    args.update(overrides)
    return MarketSpec("BTC/USDT", **args)


def eth_market() -> MarketSpec:
    return MarketSpec("ETH/USDT", price=Decimal("3000"), tick=Decimal("0.01"),
                      step=Decimal("0.0001"), min_notional=Decimal("5"))


def make_config(**overrides: Any) -> SimConfig:
    args: dict[str, Any] = {
        "markets": [btc_market(), eth_market()], "seed": 1,
        "balances": {"USDT": Decimal("100000"), "BTC": Decimal("1"), "ETH": Decimal("0")}}
    args.update(overrides)
    return SimConfig(**args)


@pytest.fixture
def sim():
    """A simulator on an ephemeral port: BTC/USDT at 60000, ETH/USDT at 3000,
    100000 USDT and 1 BTC, fees 0.1 %."""
    with SimulatorServer(make_config()) as server:
        yield server


@pytest.fixture
def make_sim():
    """Factory for simulators with a custom SimConfig; all are stopped at the end."""
    servers: list[SimulatorServer] = []

    def factory(config: SimConfig | None = None, **kwargs: Any) -> SimulatorServer:
        server = SimulatorServer(config or make_config(), **kwargs).start()
        servers.append(server)
        return server

    yield factory
    for server in servers:
        server.stop()


@pytest.fixture
def exchange(sim):
    """Real ccxt.binance pointed at `sim`, markets loaded."""
    client = ccxt_client(sim)
    client.load_markets()
    return client


class Http:
    """Minimal HTTP client returning (status, headers, decoded JSON or text)."""

    def __init__(self, base_url: str) -> None:
        self.base_url = base_url

    def request(self, method: str, path: str, *, query: str = "", body: bytes | None = None,
                headers: dict[str, str] | None = None) -> tuple[int, dict, Any]:
        url = self.base_url + path + (f"?{query}" if query else "")
        req = urllib.request.Request(url, data=body, method=method, headers=headers or {})
        try:
            with urllib.request.urlopen(req, timeout=5) as resp:
                return resp.status, dict(resp.headers), _decode(resp.read())
        except urllib.error.HTTPError as exc:
            return exc.code, dict(exc.headers), _decode(exc.read())

    def control(self, method: str, path: str, payload: dict | None = None):
        body = None if payload is None else json.dumps(payload).encode()
        return self.request(method, path, body=body,
                            headers={"Content-Type": "application/json"})

    def signed(self, method: str, path: str, params: dict, *, key: str | None = "qm-paper",
               secret: str = "qm-paper-secret", timestamp: int | None = None):
        """A Binance-signed request: GET/DELETE in the query, POST in a form body."""
        params = dict(params)
        params["timestamp"] = timestamp if timestamp is not None else int(time.time() * 1000)
        payload = urlencode(params)
        signature = hmac.new(secret.encode(), payload.encode(), hashlib.sha256).hexdigest()
        signed = f"{payload}&signature={signature}"
        headers = {} if key is None else {"X-MBX-APIKEY": key}
        if method == "POST":
            headers["Content-Type"] = "application/x-www-form-urlencoded"
            return self.request(method, path, body=signed.encode(), headers=headers)
        return self.request(method, path, query=signed, headers=headers)


def _decode(raw: bytes) -> Any:
    try:
        return json.loads(raw)
    except ValueError:
        return raw.decode(errors="replace")


@pytest.fixture
def http(sim) -> Http:
    return Http(sim.base_url)

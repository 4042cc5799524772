"""Command-line front end shared by `manage.py simexchange` and `python -m trading.simulator`.

Options are parsed as strings and checked here, so every bad value is reported as an
`OptionError` naming the option.
"""
from __future__ import annotations

import argparse
import errno
import signal
import threading
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

from .config import (
    DEFAULT_API_KEY,
    DEFAULT_API_SECRET,
    SimConfig,
    default_balances,
    market_for,
    split_symbol,
    to_decimal,
)
from .server import SimulatorServer

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8765
DEFAULT_SYMBOLS = "BTC/USDT,ETH/USDT"


class OptionError(ValueError):
    """A command-line option has a bad value; `option` is its name (e.g. "--price")."""

    def __init__(self, option: str, message: str) -> None:
        super().__init__(f"{option}: {message}")
        self.option = option


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", default=DEFAULT_HOST,
                        help=f"address to bind (default {DEFAULT_HOST})")
    parser.add_argument("--port", default=str(DEFAULT_PORT),
                        help=f"port to listen on, 0 picks a free one (default {DEFAULT_PORT})")
    parser.add_argument("--seed", default="1", help="seed of the random price paths (default 1)")
    parser.add_argument("--symbols", default=DEFAULT_SYMBOLS,
                        help=f"markets in ccxt form, comma separated (default {DEFAULT_SYMBOLS})")
    parser.add_argument("--price", default=None,
                        help="starting prices, one per symbol, comma separated "
                             "(default: 60000 for BTC/USDT, 3000 for ETH/USDT)")
    parser.add_argument("--klines", default=None,
                        help="klines CSV (open_time_ms,open,high,low,close,volume) replayed as "
                             "the price path of the first symbol; its --price is then unused")
    parser.add_argument("--api-key", default=DEFAULT_API_KEY,
                        help=f"API key the simulator accepts (default {DEFAULT_API_KEY})")
    parser.add_argument("--api-secret", default=DEFAULT_API_SECRET,
                        help=f"HMAC secret the simulator checks (default {DEFAULT_API_SECRET})")
    parser.add_argument("--tick-seconds", default=None,
                        help="advance the price paths one step every S seconds "
                             "(default: only when asked through /sim/step)")
    parser.add_argument("--balances", default=None,
                        help="starting balances, e.g. USDT=100000,BTC=1 "
                             "(default USDT=100000,BTC=1,ETH=10)")
    parser.add_argument("--weight-limit", default="6000",
                        help="request weight allowed per minute (default 6000)")


def build(options: dict[str, Any]) -> tuple[SimConfig, str, int]:
    """(config, host, port) from parsed options; raises OptionError."""
    host = str(options.get("host") or DEFAULT_HOST)
    port = _int(options.get("port"), "--port", 0, 65535)
    symbols = _symbols(options.get("symbols") or DEFAULT_SYMBOLS)
    prices = _prices(options.get("price"), len(symbols))
    klines = _klines(options.get("klines"))
    markets = []
    for index, symbol in enumerate(symbols):
        csv_path = klines if index == 0 else None
        try:
            markets.append(market_for(symbol, None if csv_path else prices[index], csv_path))
        except ValueError as exc:
            raise OptionError("--price", str(exc)) from None
    tick = options.get("tick_seconds")
    config_args: dict[str, Any] = {
        "markets": markets,
        "seed": _int(options.get("seed"), "--seed", 0, 2**63),
        "balances": _balances(options.get("balances")),
        "api_key": _text(options.get("api_key"), "--api-key"),
        "api_secret": _text(options.get("api_secret"), "--api-secret"),
        "weight_limit": _int(options.get("weight_limit"), "--weight-limit", 1, 10**9),
        "tick_seconds": None if tick in (None, "") else _seconds(tick, "--tick-seconds"),
    }
    try:
        return SimConfig(**config_args), host, port
    except (TypeError, ValueError) as exc:
        option = "--klines" if klines else "--symbols"
        raise OptionError(option, str(exc)) from None


def start_server(options: dict[str, Any]) -> SimulatorServer:
    """Build and start a simulator from parsed options; raises OptionError."""
    config, host, port = build(options)
    try:
        server = SimulatorServer(config, host, port, streams=True)
    except ValueError as exc:  # the klines file is read when the engine starts
        raise OptionError("--klines", str(exc)) from None
    try:
        return server.start()
    except OSError as exc:
        option = "--port" if exc.errno == errno.EADDRINUSE else "--host"
        raise OptionError(option, f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None


def serve(server: SimulatorServer, write: Callable[[str], None],
          stop: threading.Event | None = None) -> None:
    """Print how to reach the started `server`, run until SIGINT/SIGTERM (or `stop`), stop it."""
    stop = stop or threading.Event()
    previous = {sig: signal.signal(sig, lambda *_: stop.set())
                for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        for line in banner(server):
            write(line)
        stop.wait()
        write("stopping the simulator")
    finally:
        server.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def banner(server: SimulatorServer) -> list[str]:
    prices = server.engine.prices()
    markets = ", ".join(f"{spec.symbol} ({spec.market_id}) {prices[spec.market_id]}"
                        for spec in server.engine.specs())
    return [
        f"QuantMesh exchange simulator listening on {server.base_url}",
        f"symbols: {markets}",
        f"api key: {server.api_key}",
        f"api secret: {server.api_secret}",
        f"control: {server.base_url}/sim/ledger, /sim/balances, /sim/price, /sim/step ...",
        *([f"streams: {server.streams.url}/ws (market), {server.streams.url}/ws-api/v3 (user data)"]
          if server.streams is not None else []),
        "stop with Ctrl-C or SIGTERM",
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m trading.simulator",
                                     description="Binance-compatible exchange simulator")
    add_arguments(parser)
    options = vars(parser.parse_args(argv))
    try:
        server = start_server(options)
    except OptionError as exc:
        parser.error(str(exc))
    serve(server, lambda line: print(line, flush=True))
    return 0


# ------------------------------------------------------------------ option parsing

def _int(value: Any, option: str, low: int, high: int) -> int:
    try:
        number = int(str(value).strip())
    except ValueError:
        raise OptionError(option, f"not an integer: {value!r}") from None
    if not low <= number <= high:
        raise OptionError(option, f"must be between {low} and {high}: {number}")
    return number


def _seconds(value: Any, option: str) -> float:
    try:
        seconds = float(str(value).strip())
    except ValueError:
        raise OptionError(option, f"not a number of seconds: {value!r}") from None
    if not 0 < seconds <= 86_400:
        raise OptionError(option, f"must be above 0 and at most 86400: {value}")
    return seconds


def _text(value: Any, option: str) -> str:
    text = str(value or "").strip()
    if not text:
        raise OptionError(option, "must not be empty")
    return text


def _symbols(value: str) -> list[str]:
    symbols = [item.strip().upper() for item in str(value).split(",") if item.strip()]
    if not symbols:
        raise OptionError("--symbols", "no symbol given")
    for symbol in symbols:
        try:
            split_symbol(symbol)
        except ValueError as exc:
            raise OptionError("--symbols", str(exc)) from None
    if len(set(symbols)) != len(symbols):
        raise OptionError("--symbols", f"a symbol is listed twice: {value}")
    return symbols


def _prices(value: str | None, count: int) -> list[Decimal | None]:
    if value in (None, ""):
        return [None] * count
    items = [item.strip() for item in str(value).split(",")]
    if len(items) != count:
        raise OptionError("--price", f"give one price per symbol ({count}), got {len(items)}")
    prices: list[Decimal | None] = []
    for item in items:
        try:
            price = to_decimal(item, "price")
        except ValueError:
            raise OptionError("--price", f"not a decimal number: {item!r}") from None
        if price <= 0:
            raise OptionError("--price", f"must be positive: {item}")
        prices.append(price)
    return prices


def _klines(value: str | None) -> Path | None:
    if value in (None, ""):
        return None
    path = Path(str(value))
    if not path.is_file():
        raise OptionError("--klines", f"no such file: {path}")
    return path


def _balances(value: str | None) -> dict[str, Decimal]:
    if value in (None, ""):
        return default_balances()
    balances = {}
    for item in str(value).split(","):
        asset, sep, amount = item.partition("=")
        if not sep or not asset.strip():
            raise OptionError("--balances", f"expected ASSET=AMOUNT, got {item!r}")
        try:
            balances[asset.strip().upper()] = to_decimal(amount, asset)
        except ValueError:
            raise OptionError("--balances", f"not a decimal amount: {item!r}") from None
    return balances

"""A Binance-spot-compatible exchange simulator that real ccxt talks to over HTTP.

Standard library only and free of Django, so it runs standalone, inside tests, inside the
paper-trading bot, or as `manage.py simexchange`.

    from trading.simulator import SimulatorServer, SimConfig, MarketSpec

    with SimulatorServer(SimConfig(seed=7)) as sim:
        sim.base_url, sim.api_key, sim.api_secret
        sim.engine.set_price("BTC/USDT", Decimal("61000"))
"""
from .config import (
    DEFAULT_API_KEY,
    DEFAULT_API_SECRET,
    MarketSpec,
    SimConfig,
    market_for,
)
from .errors import SimError
from .matching import Balance, Engine, Order, Trade
from .pricepath import Candle, load_klines_csv
from .server import SimulatorServer

__all__ = [
    "DEFAULT_API_KEY", "DEFAULT_API_SECRET", "Balance", "Candle", "Engine", "MarketSpec", "Order",
    "SimConfig", "SimError", "SimulatorServer", "Trade", "load_klines_csv", "market_for",
]

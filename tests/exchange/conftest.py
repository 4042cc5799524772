"""A simulator with one BTC/USDT market, and gateways over real ccxt pointed at it."""
from decimal import Decimal

import pytest

from trading.exchange import ExchangeGateway, build_exchange
from trading.simulator import MarketSpec, SimConfig, SimulatorServer

D = Decimal


def btc_usdt(usdt: str = "10000") -> SimConfig:
    """BTC/USDT at 60,000 with Binance's filters, `usdt` and 1 BTC to trade with."""
    return SimConfig(
        markets=[MarketSpec("BTC/USDT", price=D("60000"), tick=D("0.01"), step=D("0.00001"), min_notional=D("5"))],
        balances={"USDT": D(usdt), "BTC": D("1")},
    )


@pytest.fixture
def sim():
    with SimulatorServer(btc_usdt()) as server:
        yield server


def gateway(sim, *, secret=None, timeout_ms=3000) -> ExchangeGateway:
    return ExchangeGateway(build_exchange("binance", api_key=sim.api_key, secret=secret or sim.api_secret,
                                          base_url=sim.base_url, timeout_ms=timeout_ms))

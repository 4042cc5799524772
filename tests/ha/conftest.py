from decimal import Decimal

import pytest

from trading.models import ExchangeAccount, Symbol
from trading.simulator import MarketSpec, SimConfig, SimulatorServer

D = Decimal


@pytest.fixture
def market():
    """A simulator with BTC/USDT at 60000 and a paper symbol on it: (simulator, symbol)."""
    config = SimConfig(markets=[MarketSpec("BTC/USDT", price=D("60000"), tick=D("0.01"), step=D("0.00001"))],
                       balances={"USDT": D("100000"), "BTC": D("0")}, weight_limit=10**9)  # several bots tick every 50 ms
    with SimulatorServer(config) as sim:
        account = ExchangeAccount.objects.create(name="paper", exchange_id="binance", paper=True, base_url=sim.base_url)
        symbol = Symbol.objects.create(account=account, symbol="BTC/USDT", price_interval=D("200"), order_quantity=D("50"),
                                       min_order_value=D("5"), buy_window_size=3, sell_window_size=2,
                                       position_safety_check=0)
        yield sim, symbol

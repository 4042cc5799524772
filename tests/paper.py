"""Paper-trading fixtures: an in-process simulator, a paper account and symbol, engines."""
from decimal import Decimal
from pathlib import Path

import pytest

from locking.nop import NopLock
from trading import services
from trading.engine import SymbolEngine
from trading.exchange.accounts import gateway_for
from trading.models import ExchangeAccount, Symbol
from trading.simulator import MarketSpec, SimConfig, SimulatorServer

START = Decimal("60000")
KLINES_CSV = Path("/work/shared/data/btcusdt-1m.csv")


@pytest.fixture
def klines_csv() -> Path:
    """The recorded BTC/USDT 1-minute candles (1,000 rows), where the machine has them."""
    if not KLINES_CSV.is_file():
        pytest.skip(f"recorded klines not available at {KLINES_CSV}")
    return KLINES_CSV


@pytest.fixture
def sim():
    config = SimConfig(
        markets=[MarketSpec("BTC/USDT", price=START, tick=Decimal("0.01"), step=Decimal("0.00001"), min_notional=Decimal("5"))],
        balances={"USDT": Decimal("100000"), "BTC": Decimal("0")},
        seed=3,
        weight_limit=10**9,  # bots in tests tick every 50 ms
    )
    with SimulatorServer(config) as server:
        yield server


@pytest.fixture
def paper_symbol(sim, db):
    account = ExchangeAccount.objects.create(name="paper", exchange_id="binance", paper=True, base_url=sim.base_url)
    return Symbol.objects.create(
        account=account, symbol="BTC/USDT", price_interval=Decimal("200"), order_quantity=Decimal("50"),
        min_order_value=Decimal("5"), buy_window_size=3, sell_window_size=3, position_safety_check=0,
    )


@pytest.fixture
def make_engine(paper_symbol):
    def build(symbol=None, locks=None, writer=None):
        symbol = symbol or Symbol.objects.get(pk=paper_symbol.pk)
        engine = SymbolEngine(symbol, gateway_for(symbol.account), locks or NopLock(),
                              writer=writer or services.Writer("test-bot", 0))
        engine.prepare()
        return engine
    return build


def futures_config(**overrides):
    """A USDⓈ-M account at Binance's limits: BTC/USDT at 50,000 standing still, 10,000 USDT."""
    from trading.simulator.futures import FuturesConfig, futures_market

    values: dict = {"markets": [futures_market("BTC/USDT", price=Decimal("50000"), volatility=Decimal("0"))],
                    "balances": {"USDT": Decimal("10000")}}
    values.update(overrides)
    return FuturesConfig(**values)


@pytest.fixture
def fsim():
    """A simulator serving a USDⓈ-M futures account (see `futures_config`) under /fapi."""
    with SimulatorServer(futures=futures_config()) as server:
        yield server

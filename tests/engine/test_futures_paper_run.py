"""A paper run on USDⓈ-M futures over the recorded BTC/USDT 1-minute candles, with funding at a set
rate, through real ccxt.binanceusdm against the simulator's fapi: grid round trips with reduce-only
sells, and the ledger's realised PnL, fees and funding equal to the simulator's account."""
from __future__ import annotations

from decimal import Decimal as D

import pytest

from locking.nop import NopLock
from reconciliation.models import ReconcileRun
from reconciliation.services import Reconciler
from tests.paper import futures_config
from trading import services
from trading.engine import SymbolEngine
from trading.exchange.accounts import gateway_for
from trading.models import ExchangeAccount, Fill, FundingPayment, GridSlot, MarketType, Symbol
from trading.simulator import SimulatorServer
from trading.simulator.futures import futures_market

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]
RATE = D("0.0003")


def test_a_futures_paper_run_over_recorded_candles_matches_the_exchange_account(klines_csv):
    config = futures_config(markets=[futures_market("BTC/USDT", klines_csv=klines_csv)], funding_rate=RATE,
                            weight_limit=10**9)  # 1,000 one-minute ticks replayed in seconds, not in 16 hours
    with SimulatorServer(futures=config) as sim:
        exchange = sim.futures
        account = ExchangeAccount.objects.create(name="futures", exchange_id="binance", market_type=MarketType.USDM,
                                                 paper=True, base_url=sim.base_url)
        symbol = Symbol.objects.create(
            account=account, symbol="BTC/USDT", price_interval=D("150"), order_quantity=D("200"),
            min_order_value=D("100"), buy_window_size=5, sell_window_size=5, position_safety_check=0, leverage=5,
        )
        engine = SymbolEngine(Symbol.objects.get(pk=symbol.pk), gateway_for(account), NopLock(),
                              writer=services.Writer("paper-run", 0))
        engine.prepare()
        wallet_before = exchange.account().wallet
        candles = len(exchange.candles("BTCUSDT"))
        steps = 0
        while exchange.step(1) is not None and steps < 2000:
            engine.tick()
            steps += 1
            if len(exchange.candles("BTCUSDT")) == candles:  # the recording has ended
                break
            candles = len(exchange.candles("BTCUSDT"))
        engine.tick()
        outcome = Reconciler(Symbol.objects.get(pk=symbol.pk), gateway_for(account), NopLock(), instance_id="cron",
                             trigger=ReconcileRun.Trigger.CRON).run()
        assert outcome.status == "clean", outcome.findings

        slots = list(GridSlot.objects.filter(symbol=symbol))
        assert sum(s.round_trips for s in slots) >= 5
        sells = [o for o in exchange.orders("BTCUSDT") if o.side == "SELL"]
        assert sells and all(exchange.is_reduce_only(o.order_id) for o in sells)
        # The position is the sum of the slots.
        position = exchange.position("BTCUSDT")
        holding = sum((s.holding for s in slots), D(0))
        assert position.qty == holding
        # Fees: every commission the exchange charged is in the ledger, exactly.
        charged = sum((t.commission for t in exchange.trades("BTCUSDT")), D(0))
        assert sum(Fill.objects.filter(symbol=symbol).values_list("fee", flat=True), D(0)) == charged
        # Funding at the set rate, at each 8-hour boundary the recording crossed while a position was open.
        booked = exchange.income("BTCUSDT", "FUNDING_FEE")
        stored = list(FundingPayment.objects.filter(symbol=symbol).values_list("amount", flat=True))
        assert booked and sorted(stored) == sorted(row.income for row in booked)
        # Equity: what the wallet gained plus the unrealised PnL at mark, against the ledger's realised
        # PnL (fees included) plus the slots' holdings at mark plus funding. The exchange nets fills
        # at an average entry and the ledger keeps each slot's own cost; the sums agree to USDT's
        # smallest unit (the average entry is a repeating decimal, so only its last digits differ).
        mark = exchange.mark_price("BTCUSDT")
        gained = exchange.account().wallet - wallet_before + position.unrealized
        ledger = (sum((s.realized_pnl for s in slots), D(0)) + sum((s.holding * mark - s.cost for s in slots), D(0))
                  + sum(stored, D(0)))
        print(f"\nfutures paper run: {steps} candles, {sum(s.round_trips for s in slots)} round trips, "
              f"{len(stored)} funding payments ({sum(stored, D(0))} USDT), fees {charged} USDT, "
              f"realised {sum((s.realized_pnl for s in slots), D(0))} USDT, equity {gained:.8f} USDT")
        unit = D("0.00000001")
        assert gained.quantize(unit) == ledger.quantize(unit), (gained, ledger)

"""Tick latency of one symbol's engine against the simulator (SQLite, NopLock): an idle tick
(nothing filled: open orders and the price are read, nothing is placed) against a tick that sees
a fill and places the orders that follow from it. Scale with many symbols is `bench.bench_scale`.

    python -m bench.bench_engine [--rounds 100]
"""
from __future__ import annotations

import argparse
import time
from decimal import Decimal

from bench.common import setup_django, summarize, write_json


def make_symbols(n: int, base_url: str):
    from trading.models import ExchangeAccount, Symbol

    account = ExchangeAccount.objects.create(name=f"bench-{n}-{time.monotonic_ns()}", exchange_id="binance", paper=True,
                                             base_url=base_url)
    return [
        Symbol.objects.create(account=account, symbol=f"C{i}/USDT", price_interval=Decimal("0.2"),
                              order_quantity=Decimal("20"), min_order_value=Decimal("5"), buy_window_size=5,
                              sell_window_size=5, position_safety_check=0)
        for i in range(n)
    ]


def simulator(n: int, tick_seconds: float | None):
    from trading.simulator import SimConfig, SimulatorServer, market_for

    config = SimConfig(markets=[market_for(f"C{i}/USDT", price="100") for i in range(n)],
                       balances={"USDT": Decimal("100000000")}, weight_limit=10**9,
                       tick_seconds=tick_seconds)  # limit off: CPU per tick, rounds back to back
    return SimulatorServer(config)


def tick_latency(rounds: int) -> dict:
    from locking.nop import NopLock
    from trading import services
    from trading.engine import SymbolEngine
    from trading.exchange.accounts import gateway_for

    with simulator(1, tick_seconds=None) as sim:
        (symbol,) = make_symbols(1, sim.base_url)
        engine = SymbolEngine(symbol, gateway_for(symbol.account), NopLock(), writer=services.Writer("bench", 0))
        engine.prepare()
        engine.tick()
        idle, fill_to_sell = [], []
        price = Decimal("100")
        for i in range(rounds):
            started = time.perf_counter()
            engine.tick()
            idle.append(time.perf_counter() - started)
            # Cross the nearest buy (fills it), then time the tick that applies the fill and places the sell.
            price = price - Decimal("0.2") if i % 2 == 0 else price + Decimal("0.2")
            sim.engine.set_price("C0/USDT", price)
            started = time.perf_counter()
            result = engine.tick()
            if result.fills and result.placed:
                fill_to_sell.append(time.perf_counter() - started)
    return {"idle_tick": summarize(idle), "tick_with_fill_and_new_orders": summarize(fill_to_sell)}


def run(rounds: int = 100) -> dict:
    setup_django()
    return {"latency": tick_latency(rounds)}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=100)
    args = parser.parse_args()
    results = run(args.rounds)
    print(results["latency"])
    print("wrote", write_json("engine", results))


if __name__ == "__main__":
    main()

"""Gateway round trips against the simulator (p50/p99 per call) and simulator throughput.

    python -m bench.bench_gateway [--n 300]
"""
from __future__ import annotations

import argparse
import time
from decimal import Decimal

from bench.common import summarize, time_calls, write_json
from trading.exchange import ExchangeGateway, build_exchange
from trading.simulator import MarketSpec, SimConfig, SimulatorServer


def run(n: int = 300) -> dict:
    # Limit off: this measures CPU per request, thousands in a row.
    config = SimConfig(
        markets=[MarketSpec("BTC/USDT", price=Decimal("60000"), tick=Decimal("0.01"), step=Decimal("0.00001"))],
        balances={"USDT": Decimal("100000000"), "BTC": Decimal("1000")}, weight_limit=10**9,
    )
    results: dict = {}
    with SimulatorServer(config) as sim:
        gw = ExchangeGateway(build_exchange("binance", api_key=sim.api_key, secret=sim.api_secret, base_url=sim.base_url))
        gw.load_markets()
        counter = iter(range(10**9))

        def create():
            i = next(counter)
            gw.create_limit_order(symbol="BTC/USDT", side="buy", amount=Decimal("0.001"),
                                  price=Decimal("50000") - Decimal(i % 1000), client_order_id=f"qm-b-{i}", post_only=True)

        calls = {
            "fetch_ticker": lambda: gw.fetch_ticker("BTC/USDT"),
            "fetch_balances": gw.fetch_balances,
            "create_limit_order": create,
            "fetch_order_by_client_id": lambda: gw.fetch_order_by_client_id("BTC/USDT", "qm-b-1"),
            "fetch_my_trades": lambda: gw.fetch_my_trades("BTC/USDT", limit=100),
        }
        for name, fn in calls.items():
            results[name] = summarize(time_calls(fn, n))
        results["fetch_open_orders(n_open)"] = {"n_open": len(sim.engine.open_orders())}

        # Simulator throughput: orders accepted per second through one keep-alive connection.
        started = time.perf_counter()
        for _ in range(n):
            create()
        elapsed = time.perf_counter() - started
        results["simulator_orders_per_second_one_client"] = round(n / elapsed, 1)
    return results


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=300)
    args = parser.parse_args()
    results = run(args.n)
    for name, stats in results.items():
        print(f"{name:<40} {stats}")
    print("wrote", write_json("gateway", {"results": results}))


if __name__ == "__main__":
    main()

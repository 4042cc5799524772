"""Order placement through the whole path (order lock, intent row, HTTP to the simulator, state
update) with the no-op lock versus the Redis lock, interleaved in rounds so machine noise hits
both alike. The seed claims a 1-3 % overhead for the Redis lock; this measures it.

    python -m bench.bench_order_path [--orders 200] [--rounds 5] [--redis redis://127.0.0.1:6379/15]
"""
from __future__ import annotations

import argparse
import os
import statistics
import time
import uuid
from decimal import Decimal

from bench.common import setup_django, summarize, write_json


def run(orders: int = 200, rounds: int = 5, redis_url: str | None = None) -> dict:
    setup_django()
    from locking.nop import NopLock
    from locking.redis_lock import RedisLock
    from trading import grid, services
    from trading.engine import SymbolEngine, TickResult
    from trading.exchange.accounts import gateway_for
    from trading.models import ExchangeAccount, Symbol
    from trading.simulator import MarketSpec, SimConfig, SimulatorServer

    redis_url = redis_url or os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/15")
    config = SimConfig(markets=[MarketSpec("BTC/USDT", price=Decimal("60000"), tick=Decimal("0.01"), step=Decimal("0.00001"))],
                       balances={"USDT": Decimal("10000000000")}, weight_limit=10**9)
    locks = {"nop": NopLock(), "redis": RedisLock(redis_url, namespace=f"bench:{uuid.uuid4().hex[:8]}:")}
    samples: dict[str, list[float]] = {"nop": [], "redis": []}
    per_round: dict[str, list[float]] = {"nop": [], "redis": []}
    with SimulatorServer(config) as sim:
        engines = {}
        for name in locks:  # one account per lock kind: a symbol is unique per account
            account = ExchangeAccount.objects.create(name=f"bench-{name}-{uuid.uuid4().hex[:6]}", exchange_id="binance",
                                                     paper=True, base_url=sim.base_url)
            engines[name] = Symbol.objects.create(account=account, symbol="BTC/USDT", price_interval=Decimal("1"),
                                                  order_quantity=Decimal("10"), position_safety_check=0)
        built = {}
        for name, symbol in engines.items():
            engine = SymbolEngine(symbol, gateway_for(symbol.account), locks[name], writer=services.Writer("bench", 0))
            engine.prepare()
            built[name] = engine
        level = {"nop": -1, "redis": -1}
        for _ in range(rounds):
            for name, engine in built.items():
                started_round = time.perf_counter()
                for _ in range(orders):
                    level[name] -= 1
                    price = Decimal("50000") + Decimal(level[name]) / 100
                    want = grid.DesiredOrder(side="buy", level=level[name], price=price, amount=Decimal("0.0002"))
                    started = time.perf_counter()
                    engine.place(want, TickResult())
                    samples[name].append(time.perf_counter() - started)
                per_round[name].append((time.perf_counter() - started_round) / orders)
    for lock in locks.values():
        lock.close()
    nop, red = summarize(samples["nop"]), summarize(samples["redis"])
    ratio_p50 = red["p50_us"] / nop["p50_us"]
    round_ratios = [r / n for r, n in zip(per_round["redis"], per_round["nop"])]
    return {
        "orders_per_round": orders, "rounds": rounds,
        "nop": nop, "redis": red,
        "orders_per_second": {"nop": round(1e6 / nop["p50_us"], 1), "redis": round(1e6 / red["p50_us"], 1)},
        "redis_over_nop_p50": round(ratio_p50, 4),
        "redis_over_nop_per_round_median": round(statistics.median(round_ratios), 4),
        "redis_over_nop_per_round": [round(r, 4) for r in round_ratios],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--orders", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--redis", default=None)
    args = parser.parse_args()
    results = run(args.orders, args.rounds, args.redis)
    print(f"nop   p50 {results['nop']['p50_us']} us  p99 {results['nop']['p99_us']} us")
    print(f"redis p50 {results['redis']['p50_us']} us  p99 {results['redis']['p99_us']} us")
    print(f"redis/nop p50 ratio {results['redis_over_nop_p50']}  per-round median {results['redis_over_nop_per_round_median']}")
    print("wrote", write_json("order_path", results))


if __name__ == "__main__":
    main()

"""Throughput of the exchange simulator: the engine alone, raw signed HTTP, and real ccxt.

    .venv/bin/python bench/bench_simulator.py [--orders N]

Prints one line per measurement and writes bench/out/simulator.json.
"""
from __future__ import annotations

import argparse
import hashlib
import hmac
import http.client
import json
import os
import platform
import statistics
import sys
import time
from decimal import Decimal
from pathlib import Path
from urllib.parse import urlencode

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from trading.exchange.local import ccxt_client  # noqa: E402
from trading.simulator import Engine, MarketSpec, SimConfig, SimulatorServer  # noqa: E402

OUT = ROOT / "bench" / "out" / "simulator.json"


def config() -> SimConfig:
    market = MarketSpec("BTC/USDT", price=Decimal("60000"), tick=Decimal("0.01"),
                        step=Decimal("0.00001"), min_notional=Decimal("5"))
    return SimConfig(markets=[market], balances={"USDT": Decimal("100000000"),
                                                 "BTC": Decimal("1000")})


def percentile(samples: list[float], fraction: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(len(ordered) * fraction))]


def bench_engine(n: int) -> dict:
    engine = Engine(config())
    started = time.perf_counter()
    for index in range(n):
        order, _ = engine.place_order("BTCUSDT", "BUY", "LIMIT", Decimal("0.001"),
                                      Decimal("50000") + index % 1000, f"e-{index}")
        engine.cancel_order("BTCUSDT", order.order_id)
    place_cancel = n / (time.perf_counter() - started)
    for index in range(n):
        engine.place_order("BTCUSDT", "BUY", "LIMIT", Decimal("0.001"),
                           Decimal("59000") + index % 500, f"r-{index}")
    started = time.perf_counter()
    fills = engine.set_price("BTCUSDT", Decimal("58000"))
    fill_rate = len(fills) / (time.perf_counter() - started)
    return {"engine_place_cancel_per_s": round(place_cancel), "engine_fills_per_s": round(fill_rate)}


def signed_body(sim: SimulatorServer, params: dict) -> str:
    params = {**params, "timestamp": int(time.time() * 1000)}
    payload = urlencode(params)
    signature = hmac.new(sim.api_secret.encode(), payload.encode(), hashlib.sha256).hexdigest()
    return f"{payload}&signature={signature}"


def bench_raw_http(sim: SimulatorServer, n: int) -> dict:
    conn = http.client.HTTPConnection("127.0.0.1", sim.port)
    headers = {"X-MBX-APIKEY": sim.api_key,
               "Content-Type": "application/x-www-form-urlencoded"}
    latencies = []
    for index in range(n):
        body = signed_body(sim, {"symbol": "BTCUSDT", "side": "BUY", "type": "LIMIT",
                                 "timeInForce": "GTC", "quantity": "0.001",
                                 "price": str(50000 + index % 1000),
                                 "newClientOrderId": f"raw-{index}"})
        started = time.perf_counter()
        conn.request("POST", "/api/v3/order", body=body, headers=headers)
        response = conn.getresponse()
        response.read()
        latencies.append(time.perf_counter() - started)
        assert response.status == 200, response.status
    conn.close()
    return {"raw_http_orders_per_s": round(n / sum(latencies)),
            "raw_http_order_median_ms": round(statistics.median(latencies) * 1000, 3),
            "raw_http_order_p99_ms": round(percentile(latencies, 0.99) * 1000, 3)}


def bench_ccxt(sim: SimulatorServer, n: int) -> dict:
    client = ccxt_client(sim)
    client.load_markets()
    create, cancel, ticker = [], [], []
    for index in range(n):
        started = time.perf_counter()
        order = client.create_order("BTC/USDT", "limit", "buy", 0.001, 40000 + index % 1000,
                                    {"newClientOrderId": f"ccxt-{index}"})
        create.append(time.perf_counter() - started)
        started = time.perf_counter()
        client.cancel_order(order["id"], "BTC/USDT")
        cancel.append(time.perf_counter() - started)
        started = time.perf_counter()
        client.fetch_ticker("BTC/USDT")
        ticker.append(time.perf_counter() - started)
    return {"ccxt_create_orders_per_s": round(n / sum(create)),
            "ccxt_create_median_ms": round(statistics.median(create) * 1000, 3),
            "ccxt_create_p99_ms": round(percentile(create, 0.99) * 1000, 3),
            "ccxt_cancel_median_ms": round(statistics.median(cancel) * 1000, 3),
            "ccxt_fetch_ticker_median_ms": round(statistics.median(ticker) * 1000, 3)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--orders", type=int, default=1000, help="orders per HTTP measurement")
    args = parser.parse_args()
    results: dict = {"machine": {"python": platform.python_version(),
                                 "platform": platform.platform(), "cpus": os.cpu_count()},
                     "orders": args.orders}
    results.update(bench_engine(args.orders * 10))
    with SimulatorServer(config()) as sim:
        sim.weights.reset(limit=10**9)  # limit off: the simulator's own throughput
        results.update(bench_raw_http(sim, args.orders))
        results.update(bench_ccxt(sim, args.orders))
    results["ccxt_overhead_ratio"] = round(
        results["raw_http_orders_per_s"] / results["ccxt_create_orders_per_s"], 2)
    for key, value in results.items():
        print(f"{key:32} {value}")
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(results, indent=2) + "\n")
    print(f"written to {OUT.relative_to(ROOT)}")


if __name__ == "__main__":
    main()

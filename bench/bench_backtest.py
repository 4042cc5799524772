"""Backtest speed and memory: one run over the recorded candles in process and over HTTP (side by
side), a year of 1-minute candles end to end, and a sweep of 27 parameter sets on every core.

    python -m bench.bench_backtest [--year-sets 1%] [--sweep-days 30]

The year is a seeded random walk (geometric Brownian motion, 60 % a year, from 60,000), written
once to bench/out/. Every run goes through `manage.py backtest` (argument checks, the file check,
worker processes, the template database, storing the runs), on a throwaway SQLite database.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.common import OUT, write_json

ROOT = Path(__file__).resolve().parent.parent
RECORDED = Path("/work/shared/data/btcusdt-1m.csv")
MINUTES_A_YEAR = 525_600
START_MS = 1_735_689_600_000  # 2025-01-01


def synthetic_year(path: Path, seed: int = 11) -> Path:
    if path.exists():
        return path
    rng = random.Random(seed)
    sigma = 0.6 / math.sqrt(MINUTES_A_YEAR)
    price = 60_000.0
    with path.open("w") as out:
        out.write("open_time_ms,open,high,low,close,volume\n")
        for i in range(MINUTES_A_YEAR):
            # Prices are written as decimal strings with 2 places; the float walk only makes the path.
            close = price * math.exp(sigma * rng.gauss(0, 1) - sigma * sigma / 2)
            wick = abs(rng.gauss(0, sigma / 2)) * price
            high, low = max(price, close) + wick, min(price, close) - wick * rng.random()
            out.write(f"{START_MS + i * 60_000},{price:.2f},{high:.2f},{low:.2f},{close:.2f},{rng.uniform(1, 20):.3f}\n")
            price = float(f"{close:.2f}")
    return path


def backtest(database: Path, *args: str) -> tuple[dict | list, float]:
    env = {**os.environ, "DATABASE_URL": f"sqlite:///{database}", "QM_DEBUG": "1"}
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "manage.py", "backtest", *args, "--json"], cwd=ROOT, env=env,
                          capture_output=True, text=True)
    elapsed = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"backtest {' '.join(args)} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout), elapsed


def row(result: dict | list, elapsed: float) -> dict:
    assert isinstance(result, dict), "one parameter set gives one result"
    r = result["results"]
    return {"candles": r["run"]["candles"], "engine_ticks": r["run"]["ticks"], "orders": r["orders"],
            "round_trips": r["round_trips"], "run_seconds": r["run"]["seconds"],
            "candles_per_second": r["run"]["candles_per_second"], "end_to_end_seconds": round(elapsed, 2),
            "peak_rss_mib": r["run"].get("peak_rss_mib"), "total_return": r["total_return"]}


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--year-interval", default="1%")
    parser.add_argument("--sweep-days", type=int, default=30)
    args = parser.parse_args()
    OUT.mkdir(exist_ok=True)
    year = synthetic_year(OUT / "synthetic-year-1m.csv")
    results: dict = {"machine_cpus": os.cpu_count()}
    with tempfile.TemporaryDirectory() as tmp:
        db = Path(tmp) / "bench.sqlite3"
        subprocess.run([sys.executable, "manage.py", "migrate", "-v0"], cwd=ROOT, check=True,
                       env={**os.environ, "DATABASE_URL": f"sqlite:///{db}", "QM_DEBUG": "1"})
        if RECORDED.exists():
            local = row(*backtest(db, "--klines", str(RECORDED), "--price-interval", "0.3%"))
            http = row(*backtest(db, "--klines", str(RECORDED), "--price-interval", "0.3%", "--transport", "http"))
            results["recorded"] = {"file": str(RECORDED), "price_interval": "0.3%", "in_process": local, "http": http,
                                   "http_over_in_process_run_seconds": round(http["run_seconds"] / local["run_seconds"], 2)}
            print("recorded:", json.dumps(results["recorded"]), flush=True)
        results["year"] = {"price_interval": args.year_interval,
                           **row(*backtest(db, "--klines", str(year), "--price-interval", args.year_interval))}
        print("year:", json.dumps(results["year"]), flush=True)
        until = time.strftime("%Y-%m-%d", time.gmtime(START_MS / 1000 + args.sweep_days * 86_400))
        sweep, elapsed = backtest(db, "--klines", str(year), "--to", until, "--sweep", "price_interval=0.5%,1%,2%",
                                  "buy_window_size=5,10,20", "sell_window_size=5,10,20")
        assert isinstance(sweep, list)
        runs = [s["results"]["run"] for s in sweep]
        results["sweep"] = {"sets": len(sweep), "days": args.sweep_days, "candles_each": runs[0]["candles"],
                            "end_to_end_seconds": round(elapsed, 2),
                            "sum_of_run_seconds": round(sum(r["seconds"] for r in runs), 2),
                            "parallel_speed_up": round(sum(r["seconds"] for r in runs) / elapsed, 2),
                            "best": sweep[0]["parameters"], "best_return": sweep[0]["results"]["total_return"]}
        print("sweep:", json.dumps(results["sweep"]), flush=True)
    write_json("backtest", results)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Resident memory of a `runbot` process: per symbol (1, 10, 50 symbols), and over a run with the
simulator's clock sped up (one simulated minute per `--step-seconds` of real time), sampled so
growth shows.

    python -m bench.bench_memory [--symbols 1,10,50] [--settle 10] [--run-seconds 120] [--step-seconds 0.1]

The simulator runs in this process; the bot is a real `manage.py runbot` against a SQLite file.
"""
from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
from decimal import Decimal
from pathlib import Path

from bench.common import setup_django, write_json

ROOT = Path(__file__).resolve().parent.parent


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def start_bot(symbols: list[str], account: str, sim_url: str) -> subprocess.Popen:
    env = {**os.environ, "QM_PAPER_EXCHANGE_URL": sim_url, "PYTHONUNBUFFERED": "1",
           "DJANGO_SETTINGS_MODULE": "quantmesh.settings"}
    return subprocess.Popen(
        [sys.executable, "manage.py", "runbot", "--account", account, "--tick-interval", "1", "--status-interval", "3600",
         "--instance-id", f"mem-{account}"],
        cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )


def measure(count: int, settle: float, run_seconds: float, step_seconds: float) -> dict:
    from trading.models import ExchangeAccount, Symbol
    from trading.simulator import SimConfig, SimulatorServer, market_for

    names = [f"M{i}/USDT" for i in range(count)]
    config = SimConfig(markets=[market_for(n, price="100") for n in names], balances={"USDT": Decimal("100000000")},
                       weight_limit=10**9, tick_seconds=step_seconds)
    with SimulatorServer(config) as sim:
        account = ExchangeAccount.objects.create(name=f"mem{count}-{int(time.time())}", exchange_id="binance", paper=True)
        for name in names:
            Symbol.objects.create(account=account, symbol=name, price_interval=Decimal("0.3"), order_quantity=Decimal("20"),
                                  min_order_value=Decimal("5"), buy_window_size=5, sell_window_size=5,
                                  position_safety_check=0)
        bot = start_bot(names, account.name, sim.base_url)
        try:
            time.sleep(settle)
            samples = [(0.0, rss_kib(bot.pid))]
            started = time.monotonic()
            while time.monotonic() - started < run_seconds:
                time.sleep(min(10.0, run_seconds / 6))
                samples.append((round(time.monotonic() - started, 1), rss_kib(bot.pid)))
        finally:
            os.killpg(bot.pid, signal.SIGTERM)
            bot.wait(timeout=60)
        orders = len(sim.engine.ledger())
    first, last = samples[0][1], samples[-1][1]
    simulated_minutes = run_seconds / step_seconds
    return {"symbols": count, "rss_after_settle_mib": round(first / 1024, 1), "rss_end_mib": round(last / 1024, 1),
            "growth_mib": round((last - first) / 1024, 1), "orders": orders,
            "simulated_minutes": round(simulated_minutes), "samples_kib": samples}


def run(symbol_counts=(1, 10, 50), settle=10.0, run_seconds=60.0, step_seconds=0.1) -> dict:
    setup_django()
    rows = [measure(n, settle, run_seconds, step_seconds) for n in symbol_counts]
    if len(rows) > 1:
        first, last = rows[0], rows[-1]
        per_symbol = (last["rss_after_settle_mib"] - first["rss_after_settle_mib"]) / (last["symbols"] - first["symbols"])
    else:
        per_symbol = None
    return {"runs": rows, "mib_per_extra_symbol": None if per_symbol is None else round(per_symbol, 2)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--symbols", default="1,10,50")
    parser.add_argument("--settle", type=float, default=10.0)
    parser.add_argument("--run-seconds", type=float, default=60.0)
    parser.add_argument("--step-seconds", type=float, default=0.1)
    args = parser.parse_args()
    results = run(tuple(int(x) for x in args.symbols.split(",")), args.settle, args.run_seconds, args.step_seconds)
    for row in results["runs"]:
        print(f"{row['symbols']:>3} symbols: RSS {row['rss_after_settle_mib']} MiB after settling, {row['rss_end_mib']} MiB "
              f"after {row['simulated_minutes']} simulated minutes ({row['growth_mib']:+} MiB), {row['orders']} orders")
    print(f"per extra symbol: {results['mib_per_extra_symbol']} MiB")
    print("wrote", write_json("memory", results))


if __name__ == "__main__":
    main()

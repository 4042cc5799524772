"""Run every benchmark, then write bench/results.json and bench/results.md.

    python -m bench            (or: make bench)

Each benchmark runs in its own process against the local services (Redis at REDIS_URL, default
redis://127.0.0.1:6379/15) and writes bench/out/<name>.json; this collects them.
"""
from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

from bench.common import OUT, machine

ROOT = Path(__file__).resolve().parent.parent
RUNS = [
    ("locks", [sys.executable, "bench/bench_locks.py", "-n", "5000", "--rounds", "5"]),
    ("order_path", [sys.executable, "-m", "bench.bench_order_path", "--orders", "200", "--rounds", "5"]),
    ("gateway", [sys.executable, "-m", "bench.bench_gateway", "--n", "300"]),
    ("simulator", [sys.executable, "bench/bench_simulator.py"]),
    ("engine", [sys.executable, "-m", "bench.bench_engine", "--seconds", "5"]),
    ("reconcile", [sys.executable, "-m", "bench.bench_reconcile", "--sizes", "100,1000,10000"]),
    ("memory", [sys.executable, "-m", "bench.bench_memory", "--symbols", "1,10,50", "--settle", "10", "--run-seconds", "60"]),
]


def main() -> int:
    collected, failures = {}, []
    for name, command in RUNS:
        print(f"== {name}: {' '.join(command[1:])}", flush=True)
        started = time.monotonic()
        done = subprocess.run(command, cwd=ROOT)
        if done.returncode != 0:
            failures.append(name)
            continue
        path = OUT / f"{name}.json"
        if path.exists():
            collected[name] = json.loads(path.read_text())
        print(f"   {time.monotonic() - started:.1f}s", flush=True)
    results = {"machine": machine(), "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "results": collected,
               "failed": failures}
    (ROOT / "bench" / "results.json").write_text(json.dumps(results, indent=2, default=str))
    (ROOT / "bench" / "results.md").write_text(markdown(results))
    print((ROOT / "bench" / "results.md").read_text())
    return 1 if failures else 0


def markdown(results: dict) -> str:
    r = results["results"]
    lines = [f"Measured {results['when']} on {results['machine']['platform']}, {results['machine']['cpus']} CPUs, "
             f"Python {results['machine']['python']}. Medians with p99; ratios from the same run.", ""]
    if "locks" in r:
        lines += ["| lock (acquire + release) | p50 µs | p99 µs | round trips |", "|---|---|---|---|"]
        for name, row in r["locks"]["results"].items():
            lines.append(f"| {name} | {row['p50_us']} | {row['p99_us']} | {row['round_trips_per_op']} |")
        lines += ["", "ratios: " + ", ".join(f"{k} = {v}" for k, v in r["locks"]["ratios"].items()), ""]
    if "order_path" in r:
        o = r["order_path"]
        lines += ["| order path (lock + intent + HTTP + update) | p50 µs | p99 µs | orders/s |", "|---|---|---|---|",
                  f"| NopLock | {o['nop']['p50_us']} | {o['nop']['p99_us']} | {o['orders_per_second']['nop']} |",
                  f"| RedisLock | {o['redis']['p50_us']} | {o['redis']['p99_us']} | {o['orders_per_second']['redis']} |",
                  "", f"Redis / nop: p50 ratio {o['redis_over_nop_p50']}, per-round median {o['redis_over_nop_per_round_median']}", ""]
    if "gateway" in r:
        lines += ["| gateway call against the simulator | p50 µs | p99 µs |", "|---|---|---|"]
        for name, row in r["gateway"]["results"].items():
            if isinstance(row, dict) and "p50_us" in row:
                lines.append(f"| {name} | {row['p50_us']} | {row['p99_us']} |")
        lines.append("")
    if "engine" in r:
        lines += ["| symbols on one instance | ticks/s total | ticks/s per symbol | orders accepted |", "|---|---|---|---|"]
        for row in r["engine"]["scaling"]:
            lines.append(f"| {row['symbols']} | {row['ticks_per_second']} | {row['ticks_per_second_per_symbol']} | "
                         f"{row['orders_accepted']} |")
        lat = r["engine"]["latency"]
        lines += ["", f"tick latency: idle p50 {lat['idle_tick']['p50_us']} µs; with a fill and new orders p50 "
                  f"{lat['tick_with_fill_and_new_orders']['p50_us']} µs (p99 {lat['tick_with_fill_and_new_orders']['p99_us']})", ""]
    if "reconcile" in r:
        lines += ["| open orders | reconcile total s | exchange calls s | ledger work s | ledger µs/order |",
                  "|---|---|---|---|---|"]
        for row in r["reconcile"]["sizes"]:
            lines.append(f"| {row['open_orders']} | {row['total_s']} | {row['exchange_calls_s']} | {row['ledger_s']} | "
                         f"{row['ledger_us_per_order']} |")
        lines.append("")
    if "memory" in r:
        lines += ["| runbot, symbols | RSS after settling MiB | RSS at end MiB | simulated minutes | orders |",
                  "|---|---|---|---|---|"]
        for row in r["memory"]["runs"]:
            lines.append(f"| {row['symbols']} | {row['rss_after_settle_mib']} | {row['rss_end_mib']} | "
                         f"{row['simulated_minutes']} | {row['orders']} |")
        lines += ["", f"per extra symbol: {r['memory']['mib_per_extra_symbol']} MiB", ""]
    if results["failed"]:
        lines.append(f"failed: {', '.join(results['failed'])}")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())

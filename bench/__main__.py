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
    ("engine", [sys.executable, "-m", "bench.bench_engine", "--rounds", "100"]),
    ("reconcile", [sys.executable, "-m", "bench.bench_reconcile", "--sizes", "100,1000,10000"]),
    # Binance's default limits, polling against streams: 2 x (15 s start + 60 s idle + 60 s trading).
    ("limits", [sys.executable, "-m", "bench.bench_limits", "--symbols", "10", "--seconds", "60"]),
    # 50 symbols for one simulated hour at 10x (6 min), the same hour with jemalloc (6 min), a stress
    # minute, memory per symbol, 3 x 60 + failover.
    # The recorded candles in process and over HTTP, a year of 1-minute candles, 27 sets of 30 days.
    ("backtest", [sys.executable, "-m", "bench.bench_backtest"]),
    ("scale", [sys.executable, "-m", "bench.bench_scale", "--soak-seconds", "360", "--stress-seconds", "60"]),
]

# The scale runs' rows: each bot is started as `make run` starts it (glibc's malloc with its
# per-thread caches off, quantmesh.malloc), or as the compose file does (jemalloc).
SCALE_ROWS = {"single": "glibc malloc", "single_jemalloc": "jemalloc", "stress": "stress, glibc malloc"}


def main() -> int:
    """`python -m bench` runs everything; `python -m bench locks order_path` reruns those two and
    keeps the other results of bench/results.json."""
    wanted = set(sys.argv[1:])
    unknown = wanted - {name for name, _ in RUNS}
    if unknown:
        print(f"unknown benchmark(s): {', '.join(sorted(unknown))}; known: {', '.join(n for n, _ in RUNS)}")
        return 2
    collected, failures = {}, []
    previous = ROOT / "bench" / "results.json"
    if wanted and previous.exists():
        collected = json.loads(previous.read_text()).get("results", {})
    for name, command in RUNS:
        if wanted and name not in wanted:
            continue
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
               "failed": failures, "rerun": sorted(wanted)}
    (ROOT / "bench" / "results.json").write_text(json.dumps(results, indent=2, default=str))
    (ROOT / "bench" / "results.md").write_text(markdown(results))
    print((ROOT / "bench" / "results.md").read_text())
    return 1 if failures else 0


def markdown(results: dict) -> str:
    r = results["results"]
    rerun = f" ({', '.join(results['rerun'])} rerun then; the rest from the run before)" if results.get("rerun") else ""
    lines = [f"Measured {results['when']}{rerun} on {results['machine']['platform']}, {results['machine']['cpus']} CPUs, "
             f"Python {results['machine']['python']}. Medians with p99; ratios from the same run.", ""]
    if "limits" in r:
        lines += ["| Binance's default limits | weight/symbol-min idle | trading | fill to sell p50 ms | p99 | 429 / -1015 / 418 |",
                  "|---|---|---|---|---|---|"]
        for mode in ("polling", "streams"):
            row = r["limits"][mode]
            lines.append(f"| {mode} | {row['idle']['weight_per_symbol_minute']} | {row['trading']['weight_per_symbol_minute']} | "
                         f"{row['fill_to_sell_ms']['p50']} | {row['fill_to_sell_ms']['p99']} | "
                         f"{row['refused_429']} / {row['refused_1015']} / {row['banned_418']} |")
        lines.append("")
    if "locks" in r:
        lines += ["| lock (acquire + release) | p50 µs | p99 µs | round trips |", "|---|---|---|---|"]
        for name, row in r["locks"]["results"].items():
            lines.append(f"| {name} | {row['p50_us']} | {row['p99_us']} | {row['round_trips_per_op']} |")
        lines += ["", "ratios: " + ", ".join(f"{k} = {v}" for k, v in r["locks"]["ratios"].items()), ""]
    if "order_path" in r:
        lines += ["| order path (lock + intent + HTTP + update), exchange latency | NopLock p50 µs | RedisLock p50 µs "
                  "| Redis - nop µs | Redis / nop p50 | median of paired orders | per-round median "
                  "| an order alone in its tick, paired (µs over nop) "
                  "| floor: NopLock + one PING round trip, paired (µs over nop) | Redis's own µs per lock script |",
                  "|---|---|---|---|---|---|---|---|---|---|"]
        for latency, o in r["order_path"]["by_latency"].items():
            lines.append(f"| {latency} | {o['nop']['p50_us']} | {o['redis']['p50_us']} | {o['redis_minus_nop_p50_us']} | "
                         f"{o['redis_over_nop_p50']} | {o.get('redis_over_nop_median_of_pairs', '-')} | "
                         f"{o['redis_over_nop_per_round_median']} | "
                         f"{o.get('redis_alone_over_nop_median_of_pairs', '-')} (+{o.get('redis_alone_minus_nop_p50_us', '-')}) | "
                         f"{o.get('round_trip_floor_median_of_pairs', '-')} (+{o.get('round_trip_minus_nop_p50_us', '-')}) | "
                         f"{o.get('redis_server_us_per_script', '-')} |")
        lines.append("")
    if "gateway" in r:
        lines += ["| gateway call against the simulator | p50 µs | p99 µs |", "|---|---|---|"]
        for name, row in r["gateway"]["results"].items():
            if isinstance(row, dict) and "p50_us" in row:
                lines.append(f"| {name} | {row['p50_us']} | {row['p99_us']} |")
        lines.append("")
    if "engine" in r:
        lat = r["engine"]["latency"]
        lines += [f"one symbol's tick: idle p50 {lat['idle_tick']['p50_us']} µs (p99 {lat['idle_tick']['p99_us']}); "
                  f"with a fill and new orders p50 {lat['tick_with_fill_and_new_orders']['p50_us']} µs "
                  f"(p99 {lat['tick_with_fill_and_new_orders']['p99_us']})", ""]
    if "reconcile" in r:
        lines += ["| open orders | reconcile total s | exchange calls s | ledger work s | ledger µs/order |",
                  "|---|---|---|---|---|"]
        for row in r["reconcile"]["sizes"]:
            lines.append(f"| {row['open_orders']} | {row['total_s']} | {row['exchange_calls_s']} | {row['ledger_s']} | "
                         f"{row['ledger_us_per_order']} |")
        lines.append("")
    if "scale" in r:
        sc = r["scale"]
        lines += ["| one runbot, 50 symbols, tick 1 s | price step | ticks/s | lag p50 | lag p99 | ticks lag <= 1 s "
                  "| bot CPU % of a core | orders | fills | RSS start → mid → end MiB | RSS mean, 1st → 2nd half, MiB "
                  "| RSS trend, MiB per simulated hour |",
                  "|---|---|---|---|---|---|---|---|---|---|---|---|"]
        for name, label in SCALE_ROWS.items():
            if name in sc and "skipped" not in sc[name]:
                x = sc[name]
                lines.append(f"| {label}, {x['seconds']} s | {x['price_step_seconds']} s | {x['ticks_per_second']} | "
                             f"{x['lag_p50_s']} s | {x['lag_p99_s']} s | {x['share_within_1s']:.2%} | "
                             f"{x['bot_cpu_percent_of_one_core']} | {x['orders_placed']} | {x['fills']} | "
                             f"{x['rss_start_mib']} → {x.get('rss_mid_mib', '-')} → {x['rss_end_mib']} | "
                             f"{x.get('rss_first_half_mean_mib', '-')} → {x.get('rss_second_half_mean_mib', '-')} | "
                             f"{x.get('rss_slope_mib_per_simulated_hour', '-')} |")
        lines.append("")
        if "rss_after_start_mib" in sc:
            rows = ", ".join(f"{n} symbol{'' if str(n) == '1' else 's'} {m} MiB" for n, m in sc["rss_after_start_mib"].items())
            lines += [f"runbot RSS after start: {rows}; {sc.get('rss_mib_per_extra_symbol')} MiB per extra symbol", ""]
        if "multi" in sc:
            m = sc["multi"]
            lines += [f"{m['instances']} instances, {m['symbols']} symbols, lease TTL {m['lease_ttl_s']} s: spread "
                      f"{m['spread_settled']} (max {m['max_per_instance']}), settled in {m['settle_seconds']} s; "
                      f"SIGKILL of {m['killed']} ({m['orphaned_symbols']} symbols): trading again on a survivor after "
                      f"{m['failover_first_s']}–{m['failover_max_s']} s (median {m['failover_median_s']}, target "
                      f"<= {m['failover_target_s']} s); spread after {m['spread_after_failover']}", ""]
    if "backtest" in r:
        b = r["backtest"]
        year, sweep = b["year"], b["sweep"]
        lines += [f"backtest: a year of 1-minute candles ({year['candles']:,}, {year['price_interval']} grid) in "
                  f"{year['run_seconds']} s ({year['candles_per_second']:,} candles/s, {year['engine_ticks']:,} engine ticks, "
                  f"peak RSS {year['peak_rss_mib']} MiB), {year['end_to_end_seconds']} s end to end; a sweep of "
                  f"{sweep['sets']} sets of {sweep['days']} days in {sweep['end_to_end_seconds']} s "
                  f"({sweep['parallel_speed_up']}x on {b['machine_cpus']} cores)", ""]
        if "recorded" in b:
            rec = b["recorded"]
            lines += [f"backtest over the recorded candles: in process {rec['in_process']['run_seconds']} s, over HTTP "
                      f"{rec['http']['run_seconds']} s ({rec['http_over_in_process_run_seconds']}x), same orders "
                      f"({rec['in_process']['orders']})", ""]
    if results["failed"]:
        lines.append(f"failed: {', '.join(results['failed'])}")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())

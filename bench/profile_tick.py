"""Profile of the engine tick, the path every symbol runs once a second.

    python -m bench.profile_tick [--ticks 300] [--out bench/profiles]

One symbol against the simulator in its own process, production settings (no query log). Two runs:
`idle` (the price stands still: the common tick) and `moving` (the price path steps every other
tick, so fills and new orders happen). Writes CPU per tick, SQL queries and exchange requests per
tick, and the cProfile listing sorted by cumulative time, to <out>/tick_<mode>.txt.
"""
from __future__ import annotations

import argparse
import cProfile
import io
import json
import pstats
import time
import urllib.request
from collections import Counter
from pathlib import Path

from bench.common import machine, setup_django

ROOT = Path(__file__).resolve().parent.parent


def profile(mode: str, ticks: int) -> str:
    from django.db import connection

    from bench.bench_scale import make_account, simulator
    from locking.nop import NopLock
    from trading import services
    from trading.engine import SymbolEngine
    from trading.exchange.accounts import gateway_for
    from trading.exchange.gateway import set_request_observer
    from trading.models import ExchangeAccount, Symbol

    sim, url = simulator(["P0/USDT"], None)
    try:
        account = ExchangeAccount.objects.get(name=make_account(f"profile-{mode}", ["P0/USDT"], url))
        symbol = Symbol.objects.get(account=account)
        engine = SymbolEngine(symbol, gateway_for(account), NopLock(), writer=services.Writer("profile", 0))
        engine.prepare()
        engine.tick()
        queries = [0]
        requests: Counter[str] = Counter()

        def count(execute, sql, params, many, context):
            queries[0] += 1
            return execute(sql, params, many, context)

        set_request_observer(lambda exchange, method, seconds, error: requests.update([method]))
        step = urllib.request.Request(f"{url}/sim/step", data=b"{}", method="POST",
                                      headers={"Content-Type": "application/json"})
        placed = fills = 0
        profiler = cProfile.Profile()
        with connection.execute_wrapper(count):
            cpu = wall = 0.0
            for i in range(ticks):
                if mode == "moving" and i % 2 == 0:
                    urllib.request.urlopen(step, timeout=10).read()
                c0, t0 = time.process_time(), time.perf_counter()
                profiler.enable()
                result = engine.tick()
                profiler.disable()
                cpu += time.process_time() - c0
                wall += time.perf_counter() - t0
                placed += len(result.placed)
                fills += result.fills
        set_request_observer(None)
    finally:
        sim.stop()
    listing = io.StringIO()
    pstats.Stats(profiler, stream=listing).sort_stats("cumulative").print_stats(40)
    text = listing.getvalue().replace(str(ROOT) + "/", "")
    header = (f"tick profile, mode={mode}, {ticks} ticks, {json.dumps(machine())}\n"
              f"CPU per tick (under cProfile) {cpu / ticks * 1000:.2f} ms, wall {wall / ticks * 1000:.2f} ms; "
              f"SQL queries per tick {queries[0] / ticks:.1f}; exchange requests per tick "
              f"{sum(requests.values()) / ticks:.2f} {dict(requests)}; orders placed {placed}, fills {fills}\n")
    return header + text


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ticks", type=int, default=300)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "profiles")
    args = parser.parse_args()
    setup_django()
    args.out.mkdir(parents=True, exist_ok=True)
    for mode in ("idle", "moving"):
        text = profile(mode, args.ticks)
        (args.out / f"tick_{mode}.txt").write_text(text)
        print(text.split("\n", 2)[1])
    print("wrote", args.out)


if __name__ == "__main__":
    main()

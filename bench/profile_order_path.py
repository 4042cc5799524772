"""Where the order path spends its time, phase by phase, for each lock kind.

    python -m bench.profile_order_path [--orders 100] [--rounds 3] [--latencies 0,20] [--out bench/profiles]

Runs the paired order-path benchmark (`bench.bench_order_path`: NopLock, NopLock plus one PING
round trip, RedisLock with orders in a row, and RedisLock with each order alone in its tick, taking
turns order by order) with a timer around each phase of an order: asking for the lock, the intent
write, waiting for the lock's answer, the HTTP request, recording the reply, the release, and, for
an order alone in its tick, sending the release on its own after the order. Each phase gets its median wall time and its median CPU time (this
thread's, kernel included); wall above CPU is time spent waiting or preempted. Also reports the
time Redis itself spent per lock script. Writes <out>/order_path.txt.

cProfile is not used: it slows Python code several times over and would hide the one thing this is
about, the cost of a few round trips to an idle Redis against an order of a few milliseconds.
"""
from __future__ import annotations

import argparse
import statistics
import time
from collections import defaultdict
from pathlib import Path

from bench.common import machine, setup_django

ROOT = Path(__file__).resolve().parent.parent
PHASES = ("lock request", "intent write", "lock answer", "HTTP order", "record reply", "lock release", "release sent")


def timed(samples: dict, current: dict, phase: str, fn):
    def wrapper(*args, **kwargs):
        wall, cpu = time.perf_counter(), time.thread_time()
        try:
            return fn(*args, **kwargs)
        finally:
            if current["lock"] is not None:
                samples[(current["lock"], phase)].append((time.perf_counter() - wall, time.thread_time() - cpu))
    return wrapper


def run(orders: int, rounds: int, latencies: tuple[int, ...]) -> str:
    setup_django()
    import redis

    from bench.bench_order_path import ALONE, RoundTripLock, measure, script_stats, set_latency
    from bench.bench_scale import simulator
    from locking.base import LockService, PendingGrant
    from locking.nop import NopLock
    from locking.redis_lock import RedisLock
    from trading import services
    from trading.engine import SymbolEngine
    from trading.exchange.gateway import ExchangeGateway

    phases = {  # (owner, attribute): phase
        (LockService, "request"): "lock request", (RedisLock, "request"): "lock request",
        (services, "order_create_intent"): "intent write", (PendingGrant, "wait"): "lock answer",
        (ExchangeGateway, "create_limit_order"): "HTTP order", (services, "order_apply_exchange_state"): "record reply",
        (LockService, "unlock_deferred"): "lock release", (RedisLock, "unlock_deferred"): "lock release",
        (RedisLock, "_send_deferred"): "release sent",
        (SymbolEngine, "place"): "whole order",
    }
    originals = {target: getattr(*target) for target in phases}
    redis_url = "redis://127.0.0.1:6379/15"
    locks = {"nop": NopLock(), "round_trip": RoundTripLock(redis_url), "redis": RedisLock(redis_url, namespace="profile:"),
             ALONE: RedisLock(redis_url, namespace="profile-alone:")}
    kinds = {id(lock): name for name, lock in locks.items()}
    lines = [f"machine: {machine()}", ""]
    pinger = redis.Redis.from_url(redis_url, single_connection_client=True)
    sim, base_url = simulator(["BTC/USDT"], None, price="60000")
    current: dict = {"lock": None}

    def place(engine, *args, **kwargs):  # marks which lock kind the phases inside belong to
        current["lock"] = kinds[id(engine.locks)]
        return originals[(SymbolEngine, "place")](engine, *args, **kwargs)

    try:
        for ms in latencies:
            samples: dict = defaultdict(list)
            for (owner, name), phase in phases.items():
                fn = place if (owner, name) == (SymbolEngine, "place") else originals[(owner, name)]
                setattr(owner, name, timed(samples, current, phase, fn))
            set_latency(base_url, ms)
            before = script_stats(pinger)
            try:
                measure(base_url, locks, orders, rounds, pinger.ping)
            finally:
                for (owner, name), fn in originals.items():
                    setattr(owner, name, fn)
            lines += table(ms, samples, locks, script_stats(pinger, since=before))
    finally:
        sim.stop()
        pinger.close()
        for lock in locks.values():
            lock.close()
    return "\n".join(lines) + "\n"


def table(ms: int, samples: dict, locks: dict, per_script: float | None) -> list[str]:
    def cell(lock: str, phase: str) -> str:
        rows = samples.get((lock, phase))
        if not rows:
            return "-"
        wall = statistics.median(w for w, _ in rows) * 1e6
        cpu = statistics.median(c for _, c in rows) * 1e6
        return f"{wall:.0f} / {cpu:.0f}"

    names = list(locks)
    out = [f"exchange latency {ms} ms: median µs per order, wall / CPU (n = {len(samples.get(('nop', 'whole order'), []))} "
           f"orders per lock kind)", "",
           "| phase | " + " | ".join(names) + " |", "|---" * (len(names) + 1) + "|"]
    for phase in (*PHASES, "whole order"):
        out.append(f"| {phase} | " + " | ".join(cell(name, phase) for name in names) + " |")
    out += ["", f"Redis's own time per lock script (INFO commandstats): {per_script} µs", ""]
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--orders", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--latencies", default="0,20")
    parser.add_argument("--out", default=str(ROOT / "bench" / "profiles"))
    args = parser.parse_args()
    text = run(args.orders, args.rounds, tuple(int(x) for x in args.latencies.split(",")))
    path = Path(args.out) / "order_path.txt"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    print(text)
    print("wrote", path)


if __name__ == "__main__":
    main()

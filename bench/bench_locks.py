"""Uncontended acquire+release latency of the lock implementations, all against the same Redis.

    .venv/bin/python bench/bench_locks.py [--url redis://127.0.0.1:6379/15] [-n 5000] [--rounds 5]

Compared: NopLock, our RedisLock (with and without metrics), redis-py's Lock, python-redis-lock's
Lock, and a bare baseline (SET NX PX, then a Lua compare-and-delete). The implementations take
turns in rounds so that a noisy machine affects all of them alike. Round trips are counted as
requests written to a Redis connection per acquire+release. Prints a table and writes
bench/out/locks.json with ratios of ours to the baseline and to redis-py.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
import uuid
from pathlib import Path
from typing import Callable

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import redis  # noqa: E402
import redis_lock  # noqa: E402  (python-redis-lock)
from redis.connection import AbstractConnection  # noqa: E402

from locking.nop import NopLock  # noqa: E402
from locking.redis_lock import RedisLock  # noqa: E402

DEFAULT_URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/15")
OUT = ROOT / "bench" / "out" / "locks.json"

COMPARE_AND_DELETE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
    return redis.call('DEL', KEYS[1])
end
return 0
"""

Op = Callable[[], None]

_sent = [0]


def _count_requests() -> None:
    original = AbstractConnection.send_packed_command

    def counting(self: AbstractConnection, command: object, check_health: bool = True) -> None:
        _sent[0] += 1
        original(self, command, check_health)

    AbstractConnection.send_packed_command = counting  # type: ignore[method-assign]


def build(url: str, namespace: str) -> tuple[dict[str, Op], list[Callable[[], None]]]:
    """The acquire+release operation of each implementation, and how to clean up afterwards."""
    ops: dict[str, Op] = {}
    closers: list[Callable[[], None]] = []
    # The other clients speak RESP2 like ours, so only the locking differs.
    client = redis.Redis.from_url(url, protocol=2)
    closers.append(client.close)

    nop = NopLock()

    def nop_op() -> None:
        grant = nop.try_lock("order:binance:BTC/USDT:level:1", 5)
        if grant is None:
            raise RuntimeError("NopLock refused")
        nop.unlock(grant)

    ops["NopLock"] = nop_op

    for name, record in (("RedisLock (ours)", True), ("RedisLock, no metrics", False)):
        ours = RedisLock(url, namespace=namespace, record_metrics=record)
        ours.check_server()
        closers.append(ours.close)
        key = f"order:binance:BTC/USDT:level:{int(record)}"

        def ours_op(ours: RedisLock = ours, key: str = key) -> None:
            grant = ours.try_lock(key, 5)
            if grant is None:
                raise RuntimeError("RedisLock busy")
            ours.unlock(grant)

        ops[name] = ours_op

    redis_py = client.lock(f"{namespace}redis-py", timeout=5, blocking=False)

    def redis_py_op() -> None:
        if not redis_py.acquire():
            raise RuntimeError("redis-py lock busy")
        redis_py.release()

    ops["redis-py Lock"] = redis_py_op

    prl = redis_lock.Lock(client, f"{namespace}python-redis-lock", expire=5)

    def prl_op() -> None:
        if not prl.acquire(blocking=False):
            raise RuntimeError("python-redis-lock busy")
        prl.release()

    ops["python-redis-lock"] = prl_op

    compare_and_delete = client.register_script(COMPARE_AND_DELETE)
    bare_key = f"{namespace}bare"
    token = uuid.uuid4().hex

    def bare_op() -> None:
        if not client.set(bare_key, token, nx=True, px=5000):
            raise RuntimeError("bare lock busy")
        compare_and_delete(keys=[bare_key], args=[token])

    ops["bare SET NX PX + Lua DEL"] = bare_op

    def clean() -> None:
        for name in client.scan_iter(f"{namespace}*"):
            client.delete(name)
        for name in client.scan_iter("lock:*python-redis-lock"):
            client.delete(name)
        for name in client.scan_iter(f"lock-signal:{namespace}*"):
            client.delete(name)

    closers.insert(0, clean)
    return ops, closers


# Operations timed together per sample: one NopLock acquire+release takes a few microseconds, so
# the clock reads and the loop around a single call would be a large part of what is measured.
BATCH = {"NopLock": 100}


def measure(op: Op, iterations: int, batch: int = 1) -> tuple[list[float], int]:
    """Nanoseconds per acquire+release, one sample per `batch` operations; and requests sent."""
    samples = []
    sent = _sent[0]
    clock = time.perf_counter_ns
    for _ in range(max(1, iterations // batch)):
        started = clock()
        for _ in range(batch):
            op()
        samples.append((clock() - started) / batch)
    return samples, _sent[0] - sent


def percentile(sorted_samples: list[float], fraction: float) -> float:
    index = min(len(sorted_samples) - 1, int(fraction * len(sorted_samples)))
    return sorted_samples[index] / 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", default=DEFAULT_URL)
    parser.add_argument("-n", "--iterations", type=int, default=5000, help="acquire+release per implementation")
    parser.add_argument("--rounds", type=int, default=5, help="the implementations take turns this many times")
    parser.add_argument("--warmup", type=int, default=200)
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()

    _count_requests()
    namespace = f"bench:{uuid.uuid4().hex[:8]}:"
    ops, closers = build(args.url, namespace)
    samples: dict[str, list[float]] = {name: [] for name in ops}
    requests: dict[str, int] = {name: 0 for name in ops}
    operations: dict[str, int] = {name: 0 for name in ops}
    try:
        for op in ops.values():
            measure(op, args.warmup)
        per_round = max(1, args.iterations // args.rounds)
        for _ in range(args.rounds):
            for name, op in ops.items():
                batch = BATCH.get(name, 1)
                taken, sent = measure(op, per_round * batch, batch)
                samples[name].extend(taken)
                requests[name] += sent
                operations[name] += len(taken) * batch
    finally:
        for close in closers:
            close()

    results = {}
    for name, taken in samples.items():
        taken.sort()
        results[name] = {
            "p50_us": round(percentile(taken, 0.50), 1),
            "p99_us": round(percentile(taken, 0.99), 1),
            "mean_us": round(statistics.fmean(taken) / 1000, 1),
            "round_trips_per_op": round(requests[name] / operations[name], 2),
            "iterations": operations[name],
            "batch": BATCH.get(name, 1),
        }
    ours, bare, redis_py = results["RedisLock (ours)"], results["bare SET NX PX + Lua DEL"], results["redis-py Lock"]
    nop = results["NopLock"]
    nop["per_call_p50_us"] = round(nop["p50_us"] / 2, 2)  # an acquire or a release
    ratios = {
        "ours_over_bare_p50": round(ours["p50_us"] / bare["p50_us"], 2),
        "ours_over_bare_p99": round(ours["p99_us"] / bare["p99_us"], 2),
        "ours_over_redis_py_p50": round(ours["p50_us"] / redis_py["p50_us"], 2),
        "ours_over_redis_py_p99": round(ours["p99_us"] / redis_py["p99_us"], 2),
    }

    print(f"acquire+release, uncontended, {args.iterations} per implementation, Redis at {args.url}")
    print(f"{'implementation':28} {'p50 us':>9} {'p99 us':>9} {'mean us':>9} {'round trips':>12}")
    for name, row in results.items():
        print(f"{name:28} {row['p50_us']:9.1f} {row['p99_us']:9.1f} {row['mean_us']:9.1f} "
              f"{row['round_trips_per_op']:12.2f}")
    for name, value in ratios.items():
        print(f"{name}: {value}")

    info = redis.Redis.from_url(args.url).info("server")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({
        "benchmark": "lock acquire+release, uncontended",
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "redis_version": info.get("redis_version"),
        "python": platform.python_version(),
        "machine": platform.machine(),
        "cpus": os.cpu_count(),
        "iterations": args.iterations,
        "rounds": args.rounds,
        "results": results,
        "ratios": ratios,
    }, indent=2) + "\n")
    print(f"wrote {args.out.relative_to(ROOT) if args.out.is_relative_to(ROOT) else args.out}")


if __name__ == "__main__":
    main()

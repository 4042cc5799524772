"""Order placement through the whole path (order lock, intent row, HTTP to the simulator, state
update) with the no-op lock versus the Redis lock, taking turns order by order so machine noise
hits both alike. The seed claims a 1-3 % overhead for the Redis lock; this measures it.

The simulator is its own process (`manage.py simexchange`), as an exchange would be. It runs
twice: answering at once (about 1 ms per request here, far faster than any real exchange), and
with 20 ms added to each request, a fast real-world round trip. The lock waits for one Redis round
trip per order (the acquire; the release's answer is read later), so the ratio depends on what it is
compared with.

Each engine places its orders one after another, as a tick placing several does: the Redis lock's
release of one order goes to Redis in the same script as the next order's lock request. A fourth
engine, `redis_alone`, sends each release on its own right after its order (flush_deferred, timed
with the order), as for an order alone in its tick.

A third engine takes turns with the two: the NopLock plus one bare PING round trip to the same
Redis before each order (`RoundTripLock`). No lock that asks Redis before the order goes out can
cost less, so its ratio is the floor for ours, measured in the same run. (Redis is idle for the
milliseconds of an order, and on a virtual machine a round trip to an idle process costs several
times one in a tight loop; the tight-loop PING is reported too, as `redis_ping_p50_us`.)

    python -m bench.bench_order_path [--orders 200] [--rounds 5] [--latencies 0,20] [--redis redis://127.0.0.1:6379/15]
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import time
import urllib.request
import uuid
from decimal import Decimal
from typing import Any

import redis

from bench.common import setup_django, summarize, time_calls, write_json
from locking.nop import NopLock

PING = b"*1\r\n$4\r\nPING\r\n"
# The RedisLock engine whose orders are each alone in their tick: the release of an order goes out
# right after it (flush_deferred, timed with the order) instead of with the next order's request.
ALONE = "redis_alone"


class RoundTripLock(NopLock):
    """The NopLock plus one bare PING round trip to Redis per acquire, on a connection of its own:
    the least any lock that asks Redis before the order can add."""

    def __init__(self, redis_url: str) -> None:
        super().__init__()
        self._redis = redis.Redis.from_url(redis_url, single_connection_client=True)
        connection = self._redis.connection
        assert connection is not None  # single_connection_client=True opens it with the client
        self._connection = connection
        self._connection.connect()

    def try_lock(self, key, ttl, *, floor=0):
        self._connection.send_packed_command([PING], check_health=False)
        if self._connection.read_response() not in (b"PONG", "PONG", True):
            raise RuntimeError("Redis did not answer PING")
        return super().try_lock(key, ttl, floor=floor)

    def _close(self) -> None:
        self._redis.close()


def set_latency(base_url: str, ms: int) -> None:
    request = urllib.request.Request(f"{base_url}/sim/latency", data=json.dumps({"ms": ms}).encode(), method="POST",
                                     headers={"Content-Type": "application/json"})
    urllib.request.urlopen(request, timeout=10).read()


def measure(base_url: str, locks: dict, orders: int, rounds: int, ping) -> dict:
    from trading import grid, services
    from trading.engine import SymbolEngine, TickResult
    from trading.exchange.accounts import gateway_for
    from trading.models import ExchangeAccount, Symbol

    samples: dict[str, list[float]] = {name: [] for name in locks}
    per_round: dict[str, list[float]] = {name: [] for name in locks}
    engines = {}
    for name, lock in locks.items():  # one account per lock kind: a symbol is unique per account
        account = ExchangeAccount.objects.create(name=f"bench-{name}-{uuid.uuid4().hex[:6]}", exchange_id="binance",
                                                 paper=True, base_url=base_url)
        symbol = Symbol.objects.create(account=account, symbol="BTC/USDT", price_interval=Decimal("1"),
                                       order_quantity=Decimal("10"), position_safety_check=0)
        engine = SymbolEngine(symbol, gateway_for(account), lock, writer=services.Writer("bench", 0))
        engine.prepare()
        engines[name] = engine
    level = dict.fromkeys(locks, -1)
    pair_ratios: dict[str, list[float]] = {name: [] for name in locks if name != "nop"}
    for _ in range(rounds):
        started_round = dict.fromkeys(locks, 0.0)
        for _ in range(orders):
            # The two take turns order by order, so a noisy moment hits both alike; each pair of
            # neighbouring orders gives one ratio.
            taken = {}
            for name, engine in engines.items():
                level[name] -= 1
                price = Decimal("50000") + Decimal(level[name]) / 100
                want = grid.DesiredOrder(side="buy", level=level[name], price=price, amount=Decimal("0.0002"))
                started = time.perf_counter()
                if engine.place(want, TickResult()) is None:
                    raise RuntimeError(f"{name}: order at level {level[name]} was not placed")
                if name == ALONE:  # the order is its tick's only one: its release goes out now
                    engine.locks.flush_deferred()
                taken[name] = time.perf_counter() - started
                samples[name].append(taken[name])
                started_round[name] += taken[name]
            for name in locks:
                if name != "nop":
                    pair_ratios[name].append(taken[name] / taken["nop"])
        for name in locks:
            per_round[name].append(started_round[name] / orders)
    nop, red, trip = summarize(samples["nop"]), summarize(samples["redis"]), summarize(samples["round_trip"])
    rtt = summarize(time_calls(ping, 500))["p50_us"]
    round_ratios = [r / n for r, n in zip(per_round["redis"], per_round["nop"])]
    lone = summarize(samples[ALONE])
    return {
        "nop": nop, "redis": red, "round_trip": trip, "redis_alone": lone,
        "redis_alone_minus_nop_p50_us": round(lone["p50_us"] - nop["p50_us"], 1),
        "redis_alone_over_nop_median_of_pairs": round(statistics.median(pair_ratios[ALONE]), 4),
        "orders_per_second": {"nop": round(1e6 / nop["p50_us"], 1), "redis": round(1e6 / red["p50_us"], 1)},
        "redis_minus_nop_p50_us": round(red["p50_us"] - nop["p50_us"], 1),
        "redis_over_nop_p50": round(red["p50_us"] / nop["p50_us"], 4),
        "redis_over_nop_median_of_pairs": round(statistics.median(pair_ratios["redis"]), 4),
        "redis_over_nop_per_round_median": round(statistics.median(round_ratios), 4),
        "redis_over_nop_per_round": [round(r, 4) for r in round_ratios],
        # The lock must wait for its acquire's answer before the order goes out: a NopLock plus one
        # bare round trip is the least it can add (the release's answer is read later; see
        # RedisLock.unlock_nowait), measured here order by order beside the other two.
        "round_trip_minus_nop_p50_us": round(trip["p50_us"] - nop["p50_us"], 1),
        "round_trip_floor_median_of_pairs": round(statistics.median(pair_ratios["round_trip"]), 4),
        "redis_ping_p50_us": rtt,  # in a tight loop, for comparison
    }


def script_stats(client: redis.Redis, since: tuple[int, int] | None = None):
    """Redis's own count of EVALSHA calls and the microseconds it spent in them (INFO
    commandstats); with `since`, the microseconds per call from then to now. Only the lock runs
    scripts here, so this is the time Redis spends on each acquire and release of the order path."""
    row = client.info("commandstats").get("cmdstat_evalsha", {})
    now = (int(row.get("calls", 0)), int(row.get("usec", 0)))
    if since is None:
        return now
    calls = now[0] - since[0]
    return round((now[1] - since[1]) / calls, 1) if calls else None


def run(orders: int = 200, rounds: int = 5, latencies: tuple[int, ...] = (0, 20), redis_url: str | None = None) -> dict:
    setup_django()
    from bench.bench_scale import simulator
    from locking.redis_lock import RedisLock

    redis_url = redis_url or os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/15")
    locks = {"nop": NopLock(), "round_trip": RoundTripLock(redis_url),
             "redis": RedisLock(redis_url, namespace=f"bench:{uuid.uuid4().hex[:8]}:"),
             ALONE: RedisLock(redis_url, namespace=f"bench:{uuid.uuid4().hex[:8]}:")}
    pinger = redis.Redis.from_url(redis_url, single_connection_client=True)
    sim, base_url = simulator(["BTC/USDT"], None, price="60000")
    results: dict[str, Any] = {"orders_per_round": orders, "rounds": rounds, "by_latency": {}}
    try:
        for ms in latencies:
            set_latency(base_url, ms)
            before = script_stats(pinger)
            row = measure(base_url, locks, orders if ms == 0 else max(20, orders // 4), rounds, pinger.ping)
            row["redis_server_us_per_script"] = script_stats(pinger, since=before)
            results["by_latency"][f"{ms}ms"] = row
    finally:
        sim.stop()
        pinger.close()
        for lock in locks.values():
            lock.close()
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--orders", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--latencies", default="0,20", help="simulator latencies to run, ms, comma separated")
    parser.add_argument("--redis", default=None)
    args = parser.parse_args()
    results = run(args.orders, args.rounds, tuple(int(x) for x in args.latencies.split(",")), args.redis)
    for latency, row in results["by_latency"].items():
        print(f"exchange latency {latency}: nop p50 {row['nop']['p50_us']} us, redis p50 {row['redis']['p50_us']} us, "
              f"+{row['redis_minus_nop_p50_us']} us, ratio {row['redis_over_nop_p50']} "
              f"(median of pairs {row['redis_over_nop_median_of_pairs']}, "
              f"per-round median {row['redis_over_nop_per_round_median']}); one order per tick: "
              f"+{row['redis_alone_minus_nop_p50_us']} us, median of pairs {row['redis_alone_over_nop_median_of_pairs']}; floor, NopLock + one PING round trip: "
              f"+{row['round_trip_minus_nop_p50_us']} us, median of pairs {row['round_trip_floor_median_of_pairs']}; "
              f"Redis spent {row['redis_server_us_per_script']} us per lock script")
    print("wrote", write_json("order_path", results))


if __name__ == "__main__":
    main()

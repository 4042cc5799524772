"""A lock client run as its own OS process by the fault tests.

    python -m tests.locking.lock_worker contend URL NS KEY --run R --iterations N --out FILE
    python -m tests.locking.lock_worker rmw     URL NS KEY --run R --iterations N
    python -m tests.locking.lock_worker hold    URL NS KEY --ttl SECONDS

contend: wait for the start signal, then N times: lock, INCR the in-section gauge, GET and SET
the shared counter (two separate commands), DECR the gauge, unlock. Writes one JSON line per
critical section to FILE (token, server time at grant and at release, acquire latency) and a last
line with the gauge's maximum.
rmw: the same read-modify-write without any lock (the control that must lose updates).
hold: take the lock once, print the grant as JSON, then obey commands read from stdin
("unlock", "extend SECONDS"), printing each outcome as JSON, until stdin closes.

Start signal: each worker pushes onto `<ns>ready:<run>` and blocks on `<ns>go:<run>`; the test
pops one ready entry per worker, then pushes one go entry per worker.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time

import redis

from locking.base import Grant, NotOwned
from locking.redis_lock import RedisLock


class RecordingRedisLock(RedisLock):
    """Keeps the Redis server time of the last release, for the overlap checker."""

    last_release_us: int | None = None

    def _release(self, grant: Grant) -> int:
        self.last_release_us = super()._release(grant)
        return self.last_release_us


def wait_for_start(raw: redis.Redis, ns: str, run: str) -> None:
    raw.lpush(f"{ns}ready:{run}", os.getpid())
    if raw.blpop([f"{ns}go:{run}"], timeout=60) is None:
        sys.exit("no start signal")


def contend(args: argparse.Namespace) -> None:
    raw = redis.Redis.from_url(args.url)
    locks = RecordingRedisLock(args.url, namespace=args.ns, instance_id=f"worker-{os.getpid()}")
    counter, gauge = f"{args.ns}counter:{args.run}", f"{args.ns}gauge:{args.run}"
    gauge_max = 0
    wait_for_start(raw, args.ns, args.run)
    with open(args.out, "w") as out:
        for _ in range(args.iterations):
            asked = time.monotonic()
            grant = locks.lock(args.key, 5, timeout=60)
            waited = time.monotonic() - asked
            gauge_max = max(gauge_max, int(raw.incr(gauge)))
            value = int(raw.get(counter) or 0)
            raw.set(counter, value + 1)
            raw.decr(gauge)
            locks.unlock(grant)
            out.write(json.dumps({"pid": os.getpid(), "token": grant.token, "grant_us": grant.server_time_us,
                                  "release_us": locks.last_release_us, "wait": waited}) + "\n")
        out.write(json.dumps({"pid": os.getpid(), "gauge_max": gauge_max}) + "\n")
    locks.close()


def rmw(args: argparse.Namespace) -> None:
    raw = redis.Redis.from_url(args.url)
    counter = f"{args.ns}counter:{args.run}"
    wait_for_start(raw, args.ns, args.run)
    for _ in range(args.iterations):
        value = int(raw.get(counter) or 0)
        os.sched_yield()  # widen the window between read and write, as real work would
        raw.set(counter, value + 1)


def hold(args: argparse.Namespace) -> None:
    locks = RedisLock(args.url, namespace=args.ns, instance_id=f"holder-{os.getpid()}")
    grant = locks.try_lock(args.key, args.ttl)
    if grant is None:
        sys.exit("lock was busy")
    say({"token": grant.token, "grant_us": grant.server_time_us, "pid": os.getpid()})
    for line in sys.stdin:
        command, *rest = line.split()
        try:
            if command == "unlock":
                say({"unlock": locks.unlock(grant)})
            elif command == "extend":
                grant = locks.extend(grant, float(rest[0]))
                say({"extend": grant.ttl_ms})
        except NotOwned as exc:
            say({command: "not_owned", "holder_token": exc.holder_token})


def say(message: dict) -> None:
    print(json.dumps(message), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("mode", choices=["contend", "rmw", "hold"])
    parser.add_argument("url")
    parser.add_argument("ns")
    parser.add_argument("key")
    parser.add_argument("--run", default="")
    parser.add_argument("--iterations", type=int, default=0)
    parser.add_argument("--out", default="")
    parser.add_argument("--ttl", type=float, default=1.0)
    args = parser.parse_args()
    {"contend": contend, "rmw": rmw, "hold": hold}[args.mode](args)


if __name__ == "__main__":
    main()

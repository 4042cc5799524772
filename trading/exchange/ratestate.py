"""The request budget's counts and gate in Redis, shared by every process that uses the same Redis
and namespace (bot instances, Celery, the web admin, cron): Binance counts weight per IP and
orders per account, not per process.

Keys (each expires on its own): `<ns>rate:<scope>:w:<minute>` request weight of a calendar
minute, `<ns>rate:<scope>:gate` the gate, `<ns>rate:<account>:o10:<window>` and `...:o1d:<day>`
new orders. `scope` names what the exchange counts weight by (its host: one IP is assumed for
the processes on one Redis). When Redis cannot be reached, nothing may be sent: the budget
answers "wait a second", as the lock service fails closed.
"""
from __future__ import annotations

import json
import logging
import math

import redis

from trading.exchange import errors
from trading.exchange.session import READ_GRACE, Gate

log = logging.getLogger("quantmesh.exchange")

_SPEND = """
local used = tonumber(redis.call('GET', KEYS[1]) or '0')
if used + tonumber(ARGV[1]) > tonumber(ARGV[2]) then return -1 end
used = redis.call('INCRBY', KEYS[1], ARGV[1])
redis.call('EXPIRE', KEYS[1], 120)
return used
"""
_OBSERVE = """
local used = tonumber(redis.call('GET', KEYS[1]) or '0')
if tonumber(ARGV[1]) > used then redis.call('SET', KEYS[1], ARGV[1], 'EX', 120) end
return 0
"""
_TAKE_ORDER = """
local window = tonumber(redis.call('GET', KEYS[1]) or '0')
local day = tonumber(redis.call('GET', KEYS[2]) or '0')
if day >= tonumber(ARGV[2]) then return 2 end
if window >= tonumber(ARGV[1]) then return 1 end
redis.call('INCR', KEYS[1]); redis.call('EXPIRE', KEYS[1], 20)
redis.call('INCR', KEYS[2]); redis.call('EXPIRE', KEYS[2], 90000)
return 0
"""


class RedisState:
    def __init__(self, url: str, namespace: str, scope: str, account: str):
        self.client = redis.Redis.from_url(url, socket_timeout=2, socket_connect_timeout=2)
        self.prefix = f"{namespace}rate:{scope}"
        self.orders_prefix = f"{namespace}rate:{account}"
        self._spend = self.client.register_script(_SPEND)
        self._observe = self.client.register_script(_OBSERVE)
        self._take = self.client.register_script(_TAKE_ORDER)

    def _unavailable(self, exc: Exception):
        log.error("request budget in Redis unavailable, holding requests back: %s", exc)
        return errors.RateLimited(f"request budget unavailable (Redis: {exc})", 1.0)

    def spend(self, weight: int, cap: int, now: float) -> int:
        try:
            used = self._spend(keys=[f"{self.prefix}:w:{int(now // 60)}"], args=[weight, cap])
        except redis.RedisError as exc:
            raise self._unavailable(exc) from exc
        return max(1, math.ceil(60 - now % 60)) if int(used) < 0 else 0

    def observe(self, used: int, now: float) -> None:
        try:
            self._observe(keys=[f"{self.prefix}:w:{int(now // 60)}"], args=[used])
        except redis.RedisError as exc:
            log.warning("request budget in Redis: cannot record the exchange's count: %s", exc)

    def used(self, now: float) -> int:
        try:
            return int(self.client.get(f"{self.prefix}:w:{int(now // 60)}") or 0)
        except redis.RedisError:
            return 0

    def take_order(self, cap_10s: int, cap_day: int, now: float, window_s: int = 86_400) -> float:
        long_key = "o1d" if window_s == 86_400 else f"o{window_s}s"
        keys = [f"{self.orders_prefix}:o10:{int(now // 10)}", f"{self.orders_prefix}:{long_key}:{int(now // window_s)}"]
        try:
            answer = int(self._take(keys=keys, args=[cap_10s, cap_day]))
        except redis.RedisError as exc:
            raise self._unavailable(exc) from exc
        return 0.0 if answer == 0 else (10 - now % 10) if answer == 1 else (window_s - now % window_s)

    def close(self, gate: Gate, now: float) -> None:
        key = f"{self.prefix}:gate"
        try:
            current = self._read_gate(key)
            if current is None or gate.until > current.until:
                ttl_ms = max(1, int((gate.until + READ_GRACE - now) * 1000))  # reads wait the grace too
                self.client.set(key, json.dumps({"until": gate.until, "reason": gate.reason, "banned": gate.banned}), px=ttl_ms)
        except redis.RedisError as exc:
            log.error("request budget in Redis: cannot close the gate for other processes: %s", exc)

    def gate(self, now: float) -> Gate | None:
        try:
            gate = self._read_gate(f"{self.prefix}:gate")
        except redis.RedisError as exc:
            raise self._unavailable(exc) from exc
        return gate if gate is not None and gate.until > now else None

    def _read_gate(self, key: str) -> Gate | None:
        raw = self.client.get(key)
        if not raw:
            return None
        data = json.loads(raw)
        return Gate(until=float(data["until"]), reason=str(data["reason"]), banned=bool(data["banned"]))


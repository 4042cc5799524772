"""One exchange session per account and process: markets loaded once, one request budget, one
order budget and one gate, shared by every symbol thread, the reconciler and admin actions.

The exchange counts request weight and new orders; Binance spot counts weight per IP and calendar
minute (6,000) and new orders per account (100 per 10 s, 200,000 per day), and bans an IP that
keeps hitting the limit (HTTP 418, from 2 minutes to 3 days). A ccxt client throttles only itself,
so a client per thread does not protect the account. Here every request of the account goes
through `RequestBudget.before()`, with the weights and limits of the exchange's dialect
(`trading.exchange.dialects`):

- the gate: after a 429, 418 or 403 every thread of the account stops sending until the
  exchange's Retry-After (60 s when it gives none). Orders and cancels are let through again
  `READ_GRACE` seconds before reads, so what trades is served before what checks;
- the weight budget: each request's weight is charged before it goes; reads may use
  `READ_SHARE` of the limit and orders and cancels `WRITE_SHARE`, so checks can never starve
  orders. The count follows the exchange's own (Binance's `X-MBX-USED-WEIGHT-1M`) after each reply;
- the order budget (`take_order`): `ORDER_SHARE` of the order limits the exchange announces
  (Binance's `exchangeInfo.rateLimits`), asked for before an order's lock, so start-up and recovery are
  paced instead of refused.

A refused request is never sent: the caller gets `RateLimited` with the seconds to wait. Where
Redis is configured (`QM_LOCK_BACKEND=redis`), the counts and the gate live there, shared by every
process on the same Redis (bot instances, Celery, the web admin, cron), which the deployment puts
on one IP. Otherwise each process counts for itself and takes `QM_RATE_SHARE` of the limits.

A ccxt client is not shared between threads (the order path pins its request timestamp, and
error handling reads the last response's headers): each thread gets its own gateway from
`gateway()`, built on the session's markets, so only the first loads them. A session is opened
only for an exchange with a dialect: for any other, `ExchangeSession()` raises UnsupportedExchange.
"""
from __future__ import annotations

import json
import logging
import math
import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

import notifications
from trading.exchange import errors
from trading.exchange.accounts import account_ccxt_id
from trading.exchange.dialects import BINANCE_SPOT, Dialect, Limits, dialect_for
from trading.exchange.gateway import ExchangeGateway

if TYPE_CHECKING:
    from trading.exchange.streams import AccountStreams

log = logging.getLogger("quantmesh.exchange")

READ_SHARE = 0.80
WRITE_SHARE = 0.95
ORDER_SHARE = 0.5  # of ORDERS per 10 s; 0.9 of the daily limit
READ_GRACE = 1.0
RAMP_BURST = 15.0  # seconds of the minute's read budget that may be spent at once
RAMP_MIN_WAIT = 0.5  # seconds after the gate reopens before reads may go again
GATE_DEFAULT_SECONDS = 60.0


@dataclass(frozen=True)
class Gate:
    until: float  # epoch seconds
    reason: str
    banned: bool


class RateState(Protocol):
    """Where the counts and the gate live: this process, or Redis for all processes."""

    def spend(self, weight: int, cap: int, now: float) -> int: ...
    def observe(self, used: int, now: float) -> None: ...
    def used(self, now: float) -> int: ...
    def take_order(self, cap_10s: int, cap_day: int, now: float, window_s: int = 86_400) -> float: ...
    def close(self, gate: Gate, now: float) -> None: ...
    def gate(self, now: float) -> Gate | None: ...


class LocalState:
    """Counts of this process only (calendar minute, 10-second window and UTC day, as Binance counts)."""

    def __init__(self):
        self._lock = threading.Lock()
        self._minute = self._window = self._day = -1
        self._weight = self._in_window = self._in_day = 0
        self._gate: Gate | None = None

    def _roll(self, now: float, long_window_s: int = 86_400) -> None:
        minute, window, day = int(now // 60), int(now // 10), int(now // long_window_s)
        if minute != self._minute:
            self._minute, self._weight = minute, 0
        if window != self._window:
            self._window, self._in_window = window, 0
        if day != self._day:
            self._day, self._in_day = day, 0

    def spend(self, weight: int, cap: int, now: float) -> int:
        """Charge `weight` when it fits under `cap`: 0, else the seconds until the next minute."""
        with self._lock:
            self._roll(now)
            if self._weight + weight > cap:
                return max(1, math.ceil(60 - now % 60))
            self._weight += weight
            return 0

    def observe(self, used: int, now: float) -> None:
        with self._lock:
            self._roll(now)
            self._weight = max(self._weight, used)

    def used(self, now: float) -> int:
        with self._lock:
            self._roll(now)
            return self._weight

    def take_order(self, cap_10s: int, cap_day: int, now: float, window_s: int = 86_400) -> float:
        """One new order under `cap_10s` per 10 s and `cap_day` per `window_s` (a UTC day, or a
        minute on futures): 0, else the seconds until a window lets it go."""
        with self._lock:
            self._roll(now, window_s)
            if self._in_day >= cap_day:
                return window_s - now % window_s
            if self._in_window >= cap_10s:
                return 10 - now % 10
            self._in_window += 1
            self._in_day += 1
            return 0.0

    def close(self, gate: Gate, now: float) -> None:
        with self._lock:
            if self._gate is None or gate.until > self._gate.until:
                self._gate = gate

    def gate(self, now: float) -> Gate | None:
        with self._lock:
            gate = self._gate
        return gate if gate is not None and gate.until > now else None


class RequestBudget:
    """Decides, before each request of one account, whether it may go; learns from each reply."""

    def __init__(self, name: str, state: RateState, *, share: float = 1.0, limits: Limits | None = None,
                 clock=time.time, dialect: Dialect = BINANCE_SPOT):
        self.name = name
        self.state = state
        self.share = share
        self.dialect = dialect  # the exchange's weights, default limits and used-weight header
        default = limits or dialect.limits
        if default is None:
            raise ValueError(f"{name}: {dialect.name or dialect.exchange_id} has no default rate limits")
        self.limits: Limits = default
        self.clock = clock
        self.refused = 0  # requests refused here, never sent
        self._announced: float = 0.0  # the gate's end last announced, so a ban is logged once

    def set_limits(self, limits: Limits) -> None:
        self.limits = limits

    def before(self, method: str, *, write: bool) -> None:
        """Raise RateLimited (nothing is sent) when the gate is closed or the budget spent."""
        now = self.clock()
        gate = self.state.gate(now - (0.0 if write else READ_GRACE))
        if gate is not None:
            self.refused += 1
            wait = gate.until - now + (0.0 if write else READ_GRACE)
            raise errors.RateLimited(f"{self.name}: requests held back for {wait:.0f}s ({gate.reason})", max(wait, 0.1))
        cap = int(self.limits.weight_per_minute * self.share * (WRITE_SHARE if write else READ_SHARE))
        weight = self.dialect.weights.get(method, 1)
        second = now % 60
        # Spread over the minute: by second s, at most (s + RAMP_BURST) / 60 of the minute's budget,
        # so a shortfall shows as short waits through the minute, not as a blackout at its end.
        ramp = cap if write else min(cap, int(cap * (second + RAMP_BURST) / 60))
        wait = self.state.spend(weight, ramp, now)
        if wait:
            self.refused += 1
            if ramp < cap:
                needed = (self.state.used(now) + weight) * 60 / cap - RAMP_BURST
                wait = min(wait, max(RAMP_MIN_WAIT, needed - second))
            raise errors.RateLimited(f"{self.name}: request weight budget of {cap} per minute spent so far; "
                                     f"{method} waits {wait:.1f}s", float(wait))

    def tick_interval(self, symbols: int, base: float) -> float:
        """How often each of `symbols` polling symbol loops may tick within the read budget (and a
        tenth of it kept for fills and reconcile passes): at least `base`."""
        cap = self.limits.weight_per_minute * self.share * READ_SHARE * 0.9
        return max(base, symbols * self.dialect.weight_per_polling_second * 60 / cap)

    def take_order(self) -> float:
        """One new order from the order budget: 0 when granted, else the seconds to wait."""
        cap_10s = max(1, int(self.limits.orders_per_10s * self.share * ORDER_SHARE))
        cap_day = max(1, int(self.limits.orders_per_day * self.share * 0.9))
        return self.state.take_order(cap_10s, cap_day, self.clock(), self.limits.long_window_s)

    def after(self, status: int, headers, body: str) -> None:
        """Learn from one reply: the weight the exchange counts, and 429/418/403."""
        now = self.clock()
        used = _header(headers, self.dialect.used_weight_header)
        from trading import metrics

        if used is not None and used.isdigit():
            self.state.observe(int(used), now)
            metrics.EXCHANGE_WEIGHT_USED.labels(self.name).set(int(used))
        if status not in (403, 418, 429):
            return
        code = _error_code(body)
        retry = _header(headers, "retry-after")
        seconds = float(retry) if retry and _is_number(retry) else GATE_DEFAULT_SECONDS
        if status == 429 and code is not None and code == self.dialect.too_many_orders_code:
            reason = f"429 too many orders ({code}), orders held {seconds:.0f}s"
        elif status == 418:
            reason = f"418 IP BANNED by the exchange for {seconds:.0f}s"
        elif status == 403:
            reason = f"403 from the exchange's firewall, held {seconds:.0f}s"
        else:
            reason = f"429 request weight limit, held {seconds:.0f}s"
        gate = Gate(until=now + seconds, reason=reason, banned=status == 418)
        self.state.close(gate, now)
        metrics.EXCHANGE_GATE_CLOSED.labels(self.name, str(status)).inc()
        notifications.notify("ip_banned" if gate.banned else "rate_limited",
                             f"account {self.name}: {reason}; every request of the account waits until "
                             f"{time.strftime('%H:%M:%S', time.gmtime(time.time() + seconds))} UTC",
                             subject=f"account {self.name}", shared=True)
        if gate.banned and gate.until > self._announced + 1:
            self._announced = gate.until
            log.critical("%s: THE EXCHANGE HAS BANNED THIS IP (HTTP 418) until %s: every request of the account "
                         "is held back until then; trading stopped", self.name,
                         time.strftime("%H:%M:%S", time.localtime(gate.until)))
        else:
            log.warning("%s: %s; every thread of the account waits", self.name, reason)

    def status(self) -> str:
        """For status lines: empty while requests flow."""
        gate = self.state.gate(self.clock())
        if gate is None:
            return ""
        return f"{'BANNED' if gate.banned else 'held'}: {gate.reason}, {gate.until - self.clock():.0f}s left"


def _header(headers, name: str) -> str | None:
    for key, value in (headers or {}).items():
        if key.lower() == name:
            return str(value)
    return None


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _error_code(body: str) -> int | None:
    try:
        payload = json.loads(body) if body else None
    except ValueError:
        return None
    code = payload.get("code") if isinstance(payload, dict) else None
    return code if isinstance(code, int) else None


class MarketsCache:
    """The account's markets, loaded by whichever gateway needs them first."""

    def __init__(self):
        self._lock = threading.Lock()
        self._value: tuple[list, object] | None = None

    def get_or_load(self, load) -> tuple[list, object]:
        """The markets; `load()` fetches them when none are here yet, one thread at a time."""
        with self._lock:
            if self._value is None:
                self._value = load()
            return self._value


class ExchangeSession:
    """The account's markets, budget and per-thread gateways in this process."""

    def __init__(self, account, *, paper_url: str | None = None, budget: RequestBudget | None = None):
        self.dialect = dialect_for(account_ccxt_id(account))  # UnsupportedExchange before anything is built
        self.account = account
        self.paper_url = paper_url
        self.budget = budget or RequestBudget(account.name, LocalState(), dialect=self.dialect)
        self.markets = MarketsCache()
        self._local = threading.local()
        self.streams: AccountStreams | None = None
        self._streams_lock = threading.Lock()

    def start_streams(self, symbols: list[str]):
        """The account's streams for `symbols` (started once), or None where the exchange or the
        simulator has none: then everything goes by REST through the same budget."""
        with self._streams_lock:
            if self.streams is not None:
                return self.streams
            from trading.exchange.accounts import exchange_for, stream_url
            from trading.exchange.streams import AccountStreams

            url = stream_url(self.account, self.paper_url)
            if url is None:
                return None
            account, paper_url = self.account, self.paper_url

            def make_exchange():
                return exchange_for(account, paper_url=paper_url, pro=True, ws_url=url or None)

            self.streams = AccountStreams(account.name, make_exchange, symbols, self.dialect).start()
            log.info("%s: streams started for %d symbol(s)", account.name, len(symbols))
            return self.streams

    def stop_streams(self) -> None:
        with self._streams_lock:
            if self.streams is not None:
                self.streams.stop()
                self.streams = None

    def gateway(self) -> ExchangeGateway:
        """This thread's gateway of the account. Builds no request: markets are loaded on first
        use, by one gateway for all."""
        gateway = getattr(self._local, "gateway", None)
        if gateway is None:
            from trading.exchange.accounts import gateway_for

            gateway = gateway_for(self.account, paper_url=self.paper_url, budget=self.budget, markets=self.markets)
            self._local.gateway = gateway
        return gateway


_sessions: dict[tuple, ExchangeSession] = {}
_sessions_lock = threading.Lock()


def session_for(account, *, paper_url: str | None = None) -> ExchangeSession:
    """The process's session of `account` (one per account, base URL and keys)."""
    from django.conf import settings

    key = (account.pk, account_ccxt_id(account), account.base_url, paper_url, settings.QM_PAPER_EXCHANGE_URL,
           account.paper, account.api_key_env, account.api_secret_env)
    with _sessions_lock:
        session = _sessions.get(key)
        if session is None:
            session = _sessions[key] = ExchangeSession(account, paper_url=paper_url, budget=budget_for(account))
        return session


def budget_for(account) -> RequestBudget:
    from django.conf import settings

    dialect = dialect_for(account_ccxt_id(account))
    if settings.QM_LOCK_BACKEND == "redis":
        from trading.exchange.ratestate import RedisState

        scope = account.base_url or account_ccxt_id(account)  # Binance counts spot and fapi apart
        return RequestBudget(account.name, RedisState(settings.REDIS_URL, settings.QM_LOCK_NAMESPACE, scope, account.name),
                             dialect=dialect)
    share = settings.QM_RATE_SHARE / 100 if settings.QM_RATE_SHARE else _default_share
    return RequestBudget(account.name, LocalState(), share=share, dialect=dialect)


_default_share = 0.10  # of the limits, for a process that counts alone: the web admin, cron, Celery


def claim_bot_share() -> None:
    """This process is the bot: without Redis it takes 70 % of the limits, leaving 10 % each to
    the web admin and cron or Celery and 10 % of margin."""
    global _default_share
    _default_share = 0.70


def forget_sessions() -> None:
    """Drop every session of this process (tests, and after a fork)."""
    with _sessions_lock:
        for session in _sessions.values():
            session.stop_streams()
        _sessions.clear()

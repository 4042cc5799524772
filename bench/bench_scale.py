"""How `runbot` scales, fails over and holds its memory, with every part a real process.

    python -m bench.bench_scale [--part single,jemalloc,stress,rss,multi] [--soak-seconds 360] [--redis-url URL]

The simulator runs as `manage.py simexchange` and each bot as `manage.py runbot`, both against a
SQLite file (or DATABASE_URL), so the bot shares its two cores with the exchange as it would share
a host. The figures come from outside the bot: its own `/metrics` (tick lag histogram), /proc (CPU
and resident memory) and the database (orders, fills, lease owners).

- single: 50 symbols on one instance for `--soak-seconds` with one-minute candles at 10x speed
  (one price step every 6 s), so the default 360 s is one simulated hour. Loop lag distribution,
  ticks per second, CPU, and RSS sampled every 10 s to show whether memory grows.
- jemalloc: `single` again with the bot's allocator swapped for jemalloc (LD_PRELOAD), as the
  compose file's runbot services run, to tell memory the program keeps from memory glibc's
  allocator holds on to. Skipped, saying so, when
  libjemalloc.so.2 is not installed.
- stress: the same 50 symbols with a price step every 0.5 s (a fill somewhere several times a second).
- rss: resident memory after start-up with 1 and 10 symbols, against 50 from `single`.
- multi: three instances in Redis mode share 60 symbols; one is SIGKILLed; time until each of its
  symbols trades again on a survivor, against the lease TTL + 2 s.
"""
from __future__ import annotations

import argparse
import glob
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from decimal import Decimal
from pathlib import Path

from bench.common import setup_django, write_json

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_REDIS = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/15")
LAG_TARGET_S = 1.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def child_env(bot: bool = False, **extra: str) -> dict[str, str]:
    """The environment of a `manage.py` child; `bot`: started as `make run` starts `runbot`
    (quantmesh.malloc.bot_environment)."""
    from django.conf import settings

    from quantmesh import malloc

    name = settings.DATABASES["default"]["NAME"]
    base = malloc.bot_environment(os.environ) if bot else os.environ
    return {**base, "DJANGO_SETTINGS_MODULE": "quantmesh.settings", "QM_DEBUG": "0", "QM_SSL_REDIRECT": "0",
            "SECRET_KEY": "bench-only", "PYTHONUNBUFFERED": "1",
            "DATABASE_URL": os.environ.get("DATABASE_URL") or f"sqlite:///{name}", **extra}


class Proc:
    """A `manage.py` child whose output lines are kept with the time they arrived."""

    def __init__(self, *args: str, **env: str) -> None:
        self.popen = subprocess.Popen([sys.executable, "manage.py", *args], cwd=ROOT,
                                      env=child_env(bot=args[0] == "runbot", **env),
                                      stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                      start_new_session=True)
        self.command = args[0]
        self.lines: list[tuple[float, str]] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.popen.stdout is not None  # stdout=PIPE
        for line in self.popen.stdout:
            self.lines.append((time.monotonic(), line.rstrip()))

    @property
    def pid(self) -> int:
        return self.popen.pid

    def wait_line(self, needle: str, timeout: float = 60.0) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for _, line in list(self.lines):
                if needle in line:
                    return line
            if self.popen.poll() is not None:
                break
            time.sleep(0.05)
        tail = "\n".join(line for _, line in self.lines[-20:])
        raise RuntimeError(f"no line with {needle!r} from {self.command}:\n{tail}")

    def started_trading(self, since: float = 0.0) -> dict[str, float]:
        """symbol -> when this process printed that it started trading it (after `since`)."""
        found: dict[str, float] = {}
        for at, line in list(self.lines):
            if at >= since and ": trading on " in line:
                found.setdefault(line.split(":", 1)[0], at)
        return found

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.popen.poll() is None:
            os.killpg(self.pid, sig)
            try:
                self.popen.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(self.pid, signal.SIGKILL)
                self.popen.wait()


def simulator(names: list[str], step_seconds: float | None, price: str = "100") -> tuple[Proc, str]:
    """`manage.py simexchange` serving `names`, all starting at `price`; (process, base URL)."""
    port = free_port()
    args = ["simexchange", "--port", str(port), "--symbols", ",".join(names), "--price", ",".join([price] * len(names)),
            "--balances", "USDT=1000000000", "--weight-limit", "1000000000"]  # limit off: CPU and memory, not the budget (bench_limits)
    if step_seconds:
        args += ["--tick-seconds", str(step_seconds)]
    sim = Proc(*args)
    sim.wait_line("listening on")
    return sim, f"http://127.0.0.1:{port}"


def make_account(prefix: str, names: list[str], base_url: str) -> str:
    from trading.models import ExchangeAccount, Symbol

    account = ExchangeAccount.objects.create(name=f"{prefix}-{uuid.uuid4().hex[:6]}", exchange_id="binance", paper=True,
                                             base_url=base_url)
    for name in names:
        # A 0.2 % grid on a price of 100 with 0.1 % steps: a fill every few steps per symbol.
        Symbol.objects.create(account=account, symbol=name, price_interval=Decimal("0.2"), order_quantity=Decimal("20"),
                              min_order_value=Decimal("5"), buy_window_size=5, sell_window_size=5,
                              position_safety_check=0)
    return account.name


def runbot(account: str, instance: str, metrics_port: int, **env: str) -> Proc:
    return Proc("runbot", "--account", account, "--instance-id", instance, "--tick-interval", "1",
                "--status-interval", "3600", "--metrics-port", str(metrics_port), **env)


# --- reading the bot from outside --------------------------------------------------------------

def scrape(port: int) -> dict[str, float]:
    """Samples of the tick lag histogram: {'le=0.5': cumulative count, ..., 'count': n}."""
    from prometheus_client.parser import text_string_to_metric_families

    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()
    out = {}
    for family in text_string_to_metric_families(text):
        if family.name == "quantmesh_tick_lag_seconds":
            for sample in family.samples:
                if sample.name.endswith("_bucket"):
                    out[f"le={sample.labels['le']}"] = sample.value
                elif sample.name.endswith("_count"):
                    out["count"] = sample.value
    return out


def lag_summary(before: dict[str, float], after: dict[str, float], seconds: float) -> dict:
    """The lag distribution of the ticks between two scrapes, read off the cumulative buckets:
    each quantile is the bucket bound it falls under (an upper bound on the true value)."""
    ticks = after["count"] - before["count"]
    bounds = sorted((float(k[3:]), after[k] - before.get(k, 0.0)) for k in after if k.startswith("le="))

    def quantile(q: float) -> str:
        for bound, cumulative in bounds:
            if cumulative >= q * ticks:
                return f"<= {bound:g}"
        return "> max bucket"

    within = next(c for b, c in bounds if b == LAG_TARGET_S)
    return {"ticks": int(ticks), "ticks_per_second": round(ticks / seconds, 1), "lag_p50_s": quantile(0.50),
            "lag_p99_s": quantile(0.99), "lag_max_bucket_s": quantile(1.0),
            "share_within_1s": round(within / ticks, 5) if ticks else None}


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return round(int(line.split()[1]) / 1024, 1)
    return 0.0


def ledger_counts(account: str) -> dict:
    from trading.models import Fill, Order

    return {"orders": Order.objects.filter(symbol__account__name=account).count(),
            "fills": Fill.objects.filter(symbol__account__name=account).count()}


def slope_per_hour(samples: list[tuple[float, float]]) -> float | None:
    """Least-squares slope of (seconds, MiB) samples, in MiB per hour of wall time."""
    n = len(samples)
    if n < 3:
        return None
    mx = sum(t for t, _ in samples) / n
    my = sum(m for _, m in samples) / n
    sxx = sum((t - mx) ** 2 for t, _ in samples)
    return round(sum((t - mx) * (m - my) for t, m in samples) / sxx * 3600, 1) if sxx else None


def growth_per_hour(samples: list[tuple[float, float]]) -> float | None:
    """RSS slope over the second half of the run, in MiB per hour of wall time."""
    return slope_per_hour(samples[len(samples) // 2:])


def rss_trend(samples: list[tuple[float, float]], step_seconds: float | None) -> dict:
    """The resident size's trend from the first minute on (jemalloc returns start-up memory in its
    first seconds): least-squares slope per simulated hour, and the mean of each half. Single
    samples move by up to a MiB either way, so compare means or slopes, not two samples."""
    settled = [(t, m) for t, m in samples if t >= 60]
    if len(settled) < 6:  # a short run: all of it
        settled = samples
    half = len(settled) // 2
    slope = slope_per_hour(settled)
    row = {"rss_first_half_mean_mib": round(sum(m for _, m in settled[:half]) / max(half, 1), 2),
           "rss_second_half_mean_mib": round(sum(m for _, m in settled[half:]) / max(len(settled) - half, 1), 2)}
    if step_seconds and slope is not None:  # one simulated minute per price step
        row["rss_slope_mib_per_simulated_hour"] = round(slope * step_seconds / 60, 2)
    return row


# --- the parts ---------------------------------------------------------------------------------

def jemalloc_library() -> str | None:
    """The path of libjemalloc.so.2 (Debian: apt-get install libjemalloc2), or None."""
    for path in sorted(glob.glob("/usr/lib/*/libjemalloc.so.2")) + ["/usr/lib/libjemalloc.so.2", "/usr/local/lib/libjemalloc.so.2"]:
        if os.path.exists(path):
            return path
    return None


def one_instance(symbols: int, step_seconds: float, seconds: float, label: str, sample_every: float = 10.0,
                 **env: str) -> dict:
    names = [f"S{i}/USDT" for i in range(symbols)]
    sim, url = simulator(names, step_seconds)
    account = make_account(label, names, url)
    port = free_port()
    bot = runbot(account, f"{label}-bot", port, **env)
    try:
        started = time.monotonic()
        while len(bot.started_trading()) < symbols:
            if bot.popen.poll() is not None or time.monotonic() - started > 120:
                raise RuntimeError("the bot did not start every symbol:\n" + "\n".join(line for _, line in bot.lines[-20:]))
            time.sleep(0.2)
        time.sleep(5)  # a few ticks each, so the first orders are placed
        print(f"   {label}: {symbols} symbols trading, RSS {rss_mib(bot.pid)} MiB; measuring {seconds:g}s", flush=True)
        before, cpu_before, counts_before = scrape(port), cpu_seconds(bot.pid), ledger_counts(account)
        t0 = time.monotonic()
        samples = [(0.0, rss_mib(bot.pid))]
        while time.monotonic() - t0 < seconds:
            time.sleep(min(sample_every, seconds - (time.monotonic() - t0)))
            samples.append((round(time.monotonic() - t0, 1), rss_mib(bot.pid)))
            if len(samples) % 6 == 0:
                print(f"   {label}: {samples[-1][0]:.0f}s RSS {samples[-1][1]} MiB", flush=True)
        elapsed = time.monotonic() - t0
        after, cpu_after, counts_after = scrape(port), cpu_seconds(bot.pid), ledger_counts(account)
    finally:
        bot.stop()
        sim.stop()
    mid_mib = samples[len(samples) // 2][1]
    row = {"symbols": symbols, "price_step_seconds": step_seconds, "seconds": round(elapsed, 1),
           **lag_summary(before, after, elapsed),
           "bot_cpu_percent_of_one_core": round((cpu_after - cpu_before) / elapsed * 100, 1),
           "orders_placed": counts_after["orders"] - counts_before["orders"],
           "fills": counts_after["fills"] - counts_before["fills"],
           "rss_start_mib": samples[0][1], "rss_mid_mib": mid_mib, "rss_end_mib": samples[-1][1],
           "rss_growth_second_half_mib": round(samples[-1][1] - mid_mib, 1),
           "rss_max_mib": max(m for _, m in samples),
           "rss_growth_second_half_mib_per_hour": growth_per_hour(samples), **rss_trend(samples, step_seconds),
           "rss_samples": samples}
    if step_seconds:
        row["simulated_minutes"] = round(elapsed / step_seconds)
    return row


def rss_after_start(symbols: int) -> float:
    names = [f"R{i}/USDT" for i in range(symbols)]
    sim, url = simulator(names, None)
    account = make_account(f"rss{symbols}", names, url)
    bot = runbot(account, f"rss{symbols}", free_port())
    try:
        while len(bot.started_trading()) < symbols:
            time.sleep(0.2)
        time.sleep(10)
        return rss_mib(bot.pid)
    finally:
        bot.stop()
        sim.stop()


def multi(redis_url: str, instances: int = 3, symbols: int = 60, ttl_ms: int = 5000) -> dict:
    import redis

    from trading.models import Symbol

    redis.Redis.from_url(redis_url).ping()
    names = [f"M{i}/USDT" for i in range(symbols)]
    sim, url = simulator(names, 6.0)
    account = make_account("multi", names, url)
    env = {"QM_LOCK_BACKEND": "redis", "REDIS_URL": redis_url, "QM_LOCK_NAMESPACE": f"bench:{uuid.uuid4().hex[:8]}:",
           "QM_LEASE_TTL_MS": str(ttl_ms)}
    bots = {f"bot-{i + 1}": runbot(account, f"bot-{i + 1}", free_port(), **env) for i in range(instances)}
    owners = lambda: dict(Symbol.objects.filter(account__name=account).values_list("symbol", "owner_instance"))  # noqa: E731

    def spread() -> dict[str, int]:
        counts = {name: 0 for name in bots}
        for owner in owners().values():
            if owner in counts:
                counts[owner] += 1
        return counts

    try:
        # Settled: every symbol owned, no instance above its fair share, unchanged for 3 lease cycles.
        cap = -(-symbols // instances)
        started, stable_since, last = time.monotonic(), None, None
        while True:
            now_spread = spread()
            settled = sum(now_spread.values()) == symbols and max(now_spread.values()) <= cap
            if settled and now_spread == last:
                stable_since = stable_since or time.monotonic()
                if time.monotonic() - stable_since >= 3 * ttl_ms / 3000:
                    break
            else:
                stable_since = None
            last = now_spread
            if time.monotonic() - started > 180:
                raise RuntimeError(f"leases did not settle: {now_spread}")
            time.sleep(0.2)
        settled_spread = spread()
        settle_seconds = round(time.monotonic() - started, 1)
        victim = "bot-1"
        orphaned = sorted(s for s, o in owners().items() if o == victim)
        print(f"   multi: settled {settled_spread} in {settle_seconds}s; SIGKILL {victim} ({len(orphaned)} symbols)",
              flush=True)
        killed_at = time.monotonic()
        bots[victim].stop(signal.SIGKILL)
        survivors = [name for name in bots if name != victim]
        resumed: dict[str, float] = {}
        while len(resumed) < len(orphaned):
            for name in survivors:
                for symbol, at in bots[name].started_trading(since=killed_at).items():
                    if symbol in orphaned:
                        resumed.setdefault(symbol, at - killed_at)
            if time.monotonic() - killed_at > 120:
                raise RuntimeError(f"only {len(resumed)} of {len(orphaned)} symbols resumed")
            time.sleep(0.02)
        # Then wait for the survivors' spread to settle (a hand-over may be in flight).
        deadline = time.monotonic() + 30
        while True:
            after_spread = {k: v for k, v in spread().items() if k != victim}
            if sum(after_spread.values()) == symbols or time.monotonic() > deadline:
                break
            time.sleep(0.2)
    finally:
        for bot in bots.values():
            bot.stop()
        sim.stop()
    times = sorted(resumed.values())
    return {"instances": instances, "symbols": symbols, "lease_ttl_s": ttl_ms / 1000,
            "spread_settled": settled_spread, "max_per_instance": max(settled_spread.values()),
            "settle_seconds": settle_seconds, "killed": victim, "orphaned_symbols": len(orphaned),
            "failover_first_s": round(times[0], 2), "failover_median_s": round(times[len(times) // 2], 2),
            "failover_max_s": round(times[-1], 2), "failover_target_s": ttl_ms / 1000 + 2,
            "spread_after_failover": after_spread}


def run(parts: list[str], soak_seconds: float = 360.0, stress_seconds: float = 60.0,
        redis_url: str = DEFAULT_REDIS) -> dict:
    setup_django(sqlite_name="scale.sqlite3")  # the bots it starts share this file
    results: dict = {}
    if "single" in parts:
        results["single"] = one_instance(50, 6.0, soak_seconds, "soak")
    if "jemalloc" in parts:
        library = jemalloc_library()
        if library is None:
            print("   jemalloc: skipped, libjemalloc.so.2 is not installed (apt-get install libjemalloc2)", flush=True)
            results["single_jemalloc"] = {"skipped": "libjemalloc.so.2 is not installed"}
        else:
            results["single_jemalloc"] = {"allocator": library,
                                          **one_instance(50, 6.0, soak_seconds, "jemalloc", LD_PRELOAD=library)}
    if "stress" in parts:
        results["stress"] = one_instance(50, 0.5, stress_seconds, "stress")
    if "rss" in parts:
        rows = {n: rss_after_start(n) for n in (1, 10)}
        if "single" in results:
            rows[50] = results["single"]["rss_start_mib"]
        results["rss_after_start_mib"] = rows
        if 50 in rows:
            results["rss_mib_per_extra_symbol"] = round((rows[50] - rows[1]) / 49, 2)
    if "multi" in parts:
        results["multi"] = multi(redis_url)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--part", default="single,jemalloc,stress,rss,multi")
    parser.add_argument("--soak-seconds", type=float, default=360.0)
    parser.add_argument("--stress-seconds", type=float, default=60.0)
    parser.add_argument("--redis-url", default=DEFAULT_REDIS)
    args = parser.parse_args()
    results = run(args.part.split(","), args.soak_seconds, args.stress_seconds, args.redis_url)
    for name, row in results.items():
        if isinstance(row, dict):
            print(name, {k: v for k, v in row.items() if k != "rss_samples"})
        else:
            print(name, row)
    print("wrote", write_json("scale", results))


if __name__ == "__main__":
    main()

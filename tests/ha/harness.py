"""Multi-instance harness: several real `runbot` processes in Redis mode against one simulator
and one database, plus the checkers that run on what they leave behind."""
from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import uuid
from collections import defaultdict
from decimal import Decimal
from pathlib import Path

import redis

from tests.procs import manage, wait_for
from tests.services import missing_service
from trading.models import Order, OrderEvent

D = Decimal
UNPROTECTED_SUFFIX = re.compile(r"-x[0-9a-f]{6}$")


class Cluster:
    """Start, kill, pause and resume bot instances that share one lock namespace."""

    def __init__(self, tmp_path: Path, redis_url: str, *, lease_ttl_ms: int = 1500, extra_env: dict | None = None,
                 unprotected: bool = False):
        self.tmp_path = tmp_path
        self.unprotected = unprotected  # the control runs: instances without the protections
        self.namespace = f"qmtest:{uuid.uuid4().hex[:10]}:"
        self.env = {
            "QM_LOCK_BACKEND": "redis", "REDIS_URL": redis_url, "QM_LOCK_NAMESPACE": self.namespace,
            "QM_LEASE_TTL_MS": str(lease_ttl_ms), "QM_RECV_WINDOW_MS": "1000", "QM_CLOCK_MARGIN_MS": "500",
            **(extra_env or {}),
        }
        self.procs: dict[str, subprocess.Popen] = {}

    def log(self, name: str) -> Path:
        return self.tmp_path / f"{name}.log"

    def start(self, name: str, *args: str, **env: str):
        proc = manage("runbot", "--instance-id", name, "--tick-interval", "0.05", "--status-interval", "5", *args,
                      log_path=self.log(name), unprotected=self.unprotected, **{**self.env, **env})
        self.procs[name] = proc
        return proc

    def kill(self, name: str) -> None:
        proc = self.procs[name]
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()

    def stop_all(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                try:
                    os.killpg(proc.pid, signal.SIGCONT)
                    os.killpg(proc.pid, signal.SIGTERM)
                except ProcessLookupError:
                    continue
        for proc in self.procs.values():
            try:
                proc.wait(timeout=30)
            except Exception:
                os.killpg(proc.pid, signal.SIGKILL)


def process_state(pid: int) -> str:
    """'T' when stopped by a signal, 'R'/'S' when running or sleeping."""
    with open(f"/proc/{pid}/stat") as fh:
        return fh.read().rsplit(")", 1)[1].split()[0]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class RedisServer:
    """A private redis-server this test may kill and restart."""

    def __init__(self, tmp_path):
        if shutil.which("redis-server") is None:
            missing_service("redis-server is not installed")
        self.port = free_port()
        self.dir = tmp_path
        self.proc = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self):
        self.proc = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
             "--dir", str(self.dir), "--maxmemory-policy", "noeviction"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        client = redis.Redis.from_url(self.url)
        wait_for(lambda: _ping(client), timeout=20, what="redis-server up")

    def kill(self):
        self.proc.kill()
        self.proc.wait()

    def client(self):
        return redis.Redis.from_url(self.url)


def _ping(client) -> bool:
    try:
        return client.ping()
    except redis.RedisError:
        return False


# --- checkers -------------------------------------------------------------------------------------

def duplicate_slot_orders(ledger: list[dict], symbol_ids: dict[str, int]) -> list[str]:
    """Orders at the exchange that duplicate an intent: two accepted orders for the same slot and
    side whose lifetimes overlap (both live at once). Returns their client ids."""
    from trading.services import parse_client_order_id

    by_slot = defaultdict(list)
    for row in ledger:
        # The control runs' instances add a random suffix to every id (tests.ha.unprotected).
        parsed = parse_client_order_id(UNPROTECTED_SUFFIX.sub("", row["clientOrderId"]))
        if parsed is None:
            continue
        by_slot[(parsed.symbol_id, parsed.level, parsed.side)].append(row)
    duplicates = []
    for rows in by_slot.values():
        rows.sort(key=lambda r: r["time"])
        for earlier, later in zip(rows, rows[1:]):
            ended = earlier.get("updateTime", earlier["time"]) if earlier["status"] not in ("NEW", "PARTIALLY_FILLED") else None
            if ended is None or ended > later["time"]:
                duplicates += [earlier["clientOrderId"], later["clientOrderId"]]
    return duplicates


def repeated_client_ids(ledger: list[dict]) -> list[str]:
    seen, repeated = set(), []
    for row in ledger:
        if row["clientOrderId"] in seen:
            repeated.append(row["clientOrderId"])
        seen.add(row["clientOrderId"])
    return repeated


def stale_writes() -> list[tuple]:
    """Ledger writes whose fencing token is lower than a token already written for the same
    symbol before them: a symbol driven by two fence-valid instances at once."""
    bad = []
    highest: dict[int, int] = {}
    for event in OrderEvent.objects.select_related("order").order_by("created_at", "id"):
        sid = event.order.symbol_id
        if event.fence_token < highest.get(sid, 0):
            bad.append((event.order.client_order_id, event.instance_id, event.fence_token, highest[sid]))
        highest[sid] = max(highest.get(sid, 0), event.fence_token)
    return bad


def ledger_matches_exchange(ledger: list[dict]) -> list[str]:
    """Client ids where the ledger and the exchange disagree (after a final reconcile)."""
    names = {"NEW": "open", "PARTIALLY_FILLED": "partially_filled", "FILLED": "filled", "CANCELED": "canceled",
             "EXPIRED": "expired"}
    problems = []
    remote = {r["clientOrderId"]: r for r in ledger if not r.get("foreign")}
    local = {o.client_order_id: o for o in Order.objects.exclude(status__in=["rejected", "not_placed"])}
    for cid in set(remote) | set(local):
        if cid not in remote or cid not in local:
            problems.append(f"{cid}: only in {'exchange' if cid in remote else 'ledger'}")
            continue
        r, o = remote[cid], local[cid]
        if names.get(r["status"]) != o.status or D(r["executedQty"]) != o.filled_amount:
            problems.append(f"{cid}: exchange {r['status']} {r['executedQty']} vs ledger {o.status} {o.filled_amount}")
    return problems

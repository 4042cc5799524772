"""Symbol leases: which instance trades which symbol in multi-instance mode.

Every live instance computes the same assignment from the same inputs (the symbols, and the
instances whose heartbeat is fresh): a rendezvous-hash ranking with a per-instance cap of
ceil(symbols / instances), so symbols spread evenly and move as little as possible when an
instance joins or leaves. An instance trades a symbol only while it holds the symbol's lease,
a lock with a TTL that it renews every third of the TTL (the runner's control loop also looks
again just after a peer's heartbeat goes stale). The lease's fencing token is the
token of every ledger write for that symbol so an instance that paused past its
TTL cannot write once another has taken over.

A dead instance's leases expire after the TTL and its heartbeat goes stale after the same
time; the symbols' new owners then take them over and continue from the ledger. When an
instance comes back, the owners of the symbols now assigned to it stop trading them and
release the leases, and the newcomer acquires them on its next cycle.
"""
from __future__ import annotations

import hashlib
import logging
import math
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.db import transaction
from django.utils import timezone

import notifications
from locking.base import AlreadyHeld, Grant, LockBackendUnavailable, LockService, NotOwned
from trading import liveness
from trading.models import Symbol

log = logging.getLogger("quantmesh.leases")


def lease_key(exchange_id: str, symbol: str) -> str:
    return f"lease:{exchange_id}:{symbol}"


def _score(symbol_id: int, instance_id: str) -> int:
    digest = hashlib.blake2b(f"{symbol_id}|{instance_id}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big")


def assign(symbol_ids: list[int], instance_ids: list[str]) -> dict[int, str]:
    """Symbol id -> instance id. Deterministic, balanced (no instance gets more than
    ceil(len(symbols) / len(instances))), and stable: each symbol goes to the best-ranked
    instance that still has room."""
    if not instance_ids:
        return {}
    capacity = math.ceil(len(symbol_ids) / len(instance_ids))
    load = dict.fromkeys(instance_ids, 0)
    result = {}
    # Place symbols in order of how strongly they prefer their first choice, so that the
    # symbols forced to a second choice by the cap are the ones that care least.
    rankings = {sid: sorted(instance_ids, key=lambda inst: _score(sid, inst), reverse=True) for sid in symbol_ids}
    for sid in sorted(symbol_ids):
        for inst in rankings[sid]:
            if load[inst] < capacity:
                result[sid] = inst
                load[inst] += 1
                break
    return result


def live_instances(*, ttl_ms: int, now=None) -> dict[str, datetime]:
    """The alive instances in multi-instance mode (`trading.liveness`), with their last heartbeat."""
    return dict(liveness.alive_instances(now=now, lease_ttl_ms=ttl_ms).filter(lock_backend=liveness.MULTI_INSTANCE)
                .values_list("instance_id", "last_heartbeat"))


@dataclass
class Lease:
    symbol: Symbol
    grant: Grant

    @property
    def token(self) -> int:
        return self.grant.token

    def is_valid(self) -> bool:
        return self.grant.is_valid()


class LeaseKeeper:
    """Acquires, renews and releases this instance's symbol leases. All calls come from one
    thread (the lock service ties ownership to the calling thread)."""

    def __init__(self, locks: LockService, instance_id: str, *, ttl_ms: int):
        self.locks = locks
        self.instance_id = instance_id
        self.ttl_ms = ttl_ms
        self.ttl = ttl_ms / 1000
        self.held: dict[int, Lease] = {}
        # When the next other instance's heartbeat goes stale, as of the last wanted(): the
        # assignment can change then (that instance died), so the runner looks again at that moment.
        self.next_stale: datetime | None = None
        # Symbols whose lease acquire() found held by another owner since the last wanted().
        self.held_elsewhere: set[int] = set()

    @property
    def stale_after(self) -> timedelta:
        return liveness.stale_after(liveness.MULTI_INSTANCE, lease_ttl_ms=self.ttl_ms)

    def renew(self) -> list[int]:
        """Extend every held lease; returns the symbol ids whose lease is lost."""
        lost = []
        for sid, lease in list(self.held.items()):
            try:
                lease.grant = self.locks.extend(lease.grant, self.ttl)
            except NotOwned:
                log.error("%s: lease lost (another instance holds it now)", lease.symbol.symbol)
                self._lost(lease, "another instance holds it now")
                lost.append(sid)
            except LockBackendUnavailable as exc:
                if not lease.is_valid():
                    log.error("%s: lease expired while the lock backend is unreachable: %s", lease.symbol.symbol, exc)
                    self._lost(lease, f"it expired while the lock backend was unreachable ({exc})")
                    lost.append(sid)
        for sid in lost:
            self.held.pop(sid, None)
        return lost

    def _lost(self, lease: Lease, why: str) -> None:
        notifications.notify("lease_lost", f"{self.instance_id} lost the lease of {lease.symbol} and stopped "
                             f"trading it: {why}", subject=str(lease.symbol))

    def wanted(self, symbols: list[Symbol]) -> tuple[list[Symbol], list[int]]:
        """(symbols to acquire now, held symbol ids to hand over) under the current assignment."""
        heartbeats = live_instances(ttl_ms=self.ttl_ms)
        others = [beat for instance, beat in heartbeats.items() if instance != self.instance_id]
        self.next_stale = min(others) + self.stale_after if others else None
        self.held_elsewhere = set()
        instances = sorted({*heartbeats, self.instance_id})
        assignment = assign([s.pk for s in symbols], instances)
        mine = [s for s in symbols if assignment.get(s.pk) == self.instance_id]
        hand_over = [sid for sid in self.held if assignment.get(sid) not in (None, self.instance_id)]
        return [s for s in mine if s.pk not in self.held], hand_over

    def acquire(self, symbol: Symbol, exchange_id: str) -> Lease | None:
        """Try to take the symbol's lease. The token is always above the symbol's stored fence,
        even if the lock backend lost its counters (restart or flush)."""
        try:
            # Floor: above every token this symbol has seen, written (fence) or merely granted (owner),
            # so a new grant outranks a previous owner even if it never wrote before Redis lost its state.
            floor = max(symbol.fence_token, symbol.owner_token)
            grant = self.locks.try_lock(lease_key(exchange_id, symbol.symbol), self.ttl, floor=floor)
        except LockBackendUnavailable as exc:
            log.warning("%s: cannot take the lease, lock backend unavailable: %s", symbol.symbol, exc)
            return None
        except AlreadyHeld:
            return None  # a release that could not reach the backend; retried once its TTL has passed
        if grant is None:
            self.held_elsewhere.add(symbol.pk)
            return None
        lease = Lease(symbol, grant)
        self.held[symbol.pk] = lease
        previous = symbol.owner_instance  # as read before this grant: set when its owner never released it
        record_owner(symbol, self.instance_id, grant.token)
        if previous and previous != self.instance_id:
            since = f" (its owner since {symbol.owner_since:%H:%M:%S} UTC)" if symbol.owner_since else ""
            notifications.notify("lease_taken_over", f"{self.instance_id} took over {symbol} from {previous}{since}, "
                                 f"which held its lease without renewing it; fence token {grant.token}",
                                 subject=str(symbol))
        log.info("%s: lease acquired (token %s)", symbol.symbol, grant.token)
        return lease

    def release(self, sid: int) -> None:
        lease = self.held.pop(sid, None)
        if lease is None:
            return
        clear_owner(lease.symbol, self.instance_id)
        try:
            self.locks.unlock(lease.grant)
        except (NotOwned, LockBackendUnavailable) as exc:
            log.warning("%s: lease release: %s", lease.symbol.symbol, exc)
        log.info("%s: lease released", lease.symbol.symbol)

    def release_all(self) -> None:
        for sid in list(self.held):
            self.release(sid)


@transaction.atomic
def record_owner(symbol: Symbol, instance_id: str, token: int) -> None:
    Symbol.objects.filter(pk=symbol.pk, owner_token__lte=token).update(
        owner_instance=instance_id, owner_token=token, owner_since=timezone.now()
    )


@transaction.atomic
def clear_owner(symbol: Symbol, instance_id: str) -> None:
    Symbol.objects.filter(pk=symbol.pk, owner_instance=instance_id).update(owner_instance="", owner_since=None)

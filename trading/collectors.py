"""Prometheus metrics computed from the database at scrape time.

The counters in `trading.metrics`, `locking.metrics` and `reconciliation.metrics` live in the
process that does the work (a `runbot` instance, a Celery worker, a cron run) and start from zero
when it restarts. The state below lives in the database instead, so it is read when Prometheus
scrapes, by whichever process serves it (the web admin's `/metrics`), and it is the same no
matter how many instances trade or which of them reconciled last:

    quantmesh_open_orders{account,symbol,side}              live orders (pending, unknown, open, partially filled)
    quantmesh_unknown_orders{account,symbol}                orders whose placement reply was ambiguous, not yet resolved
    quantmesh_filled_slots{account,symbol}                  grid slots holding a filled buy not yet sold
    quantmesh_grid_holding{account,symbol}                  base amount those slots hold
    quantmesh_realized_pnl{account,symbol}                  sum of the slots' realised PnL, in quote currency
    quantmesh_symbol_running{account,symbol}                1 while the symbol's status is running
    quantmesh_symbol_paused{account,symbol}                 1 while it is paused
    quantmesh_symbol_reconcile_interval_seconds{account,symbol}
    quantmesh_symbol_owner_info{account,symbol,instance}    1 for the instance holding the symbol's lease
    quantmesh_last_fill_timestamp_seconds{account,symbol}   time of the newest trade in the ledger
    quantmesh_reconcile_last_finished_timestamp_seconds{account,symbol}
                                                            end of the newest reconcile pass that could run
    quantmesh_reconcile_unresolved{account,symbol}          discrepancies the newest finished pass left to a person
    quantmesh_futures_position{account,symbol}              futures: signed position at the newest reconcile snapshot
    quantmesh_futures_leverage{account,symbol}              its leverage
    quantmesh_futures_margin_ratio{account,symbol}          maintenance margin / margin balance (1 liquidates)
    quantmesh_futures_liquidation_price{account,symbol}     the exchange's liquidation price (absent when none)
    quantmesh_futures_funding{account,symbol}               funding received minus paid, in quote currency
    quantmesh_instance_heartbeat_age_seconds{instance,lock_backend}
                                                            seconds since a not-stopped bot instance's last heartbeat
    quantmesh_collector_up                                  1 when the database could be read for this scrape
    quantmesh_collector_duration_seconds                    time the queries took

Every family is yielded on every scrape, with no samples when there is nothing to report, so the
names are always known to the exposition. Money columns are stored as text on SQLite, so money is
never summed in SQL: the values are fetched and added as Decimals, and turned into floats only
for the exposition. A scrape costs ten queries whatever the number of symbols.

Call `register_collectors()` once in a process that serves `/metrics` (the web admin); it is
idempotent. Nothing registers at import time.
"""
from __future__ import annotations

import logging
import threading
import time
from collections import defaultdict
from decimal import Decimal
from typing import Iterable, Iterator, cast

from prometheus_client import REGISTRY, CollectorRegistry
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

log = logging.getLogger("quantmesh.metrics")

SYMBOL_LABELS = ("account", "symbol")


class TradingStateCollector(Collector):
    """Reads the ledger, the symbols, the reconcile history and the bot instances per scrape."""

    def describe(self) -> Iterable[GaugeMetricFamily]:
        # Without describe() the registry would call collect() at registration, which queries the
        # database, possibly before it is migrated. The families are the same with or without rows.
        return list(self._families().values())

    def collect(self) -> Iterator[GaugeMetricFamily]:
        families = self._families()
        started = time.perf_counter()
        up = 1.0
        try:
            self._fill(families)
        except Exception:  # a scrape must never fail because of the database: report it instead
            log.exception("metrics: reading the database failed")
            up = 0.0
            families = self._families()  # no partial data
        families["collector_up"].add_metric([], up)
        families["collector_duration"].add_metric([], time.perf_counter() - started)
        yield from families.values()

    # --- the families ------------------------------------------------------------------------------
    @staticmethod
    def _families() -> dict[str, GaugeMetricFamily]:
        def gauge(name: str, documentation: str, labels: Iterable[str] = SYMBOL_LABELS) -> GaugeMetricFamily:
            return GaugeMetricFamily(name, documentation, labels=list(labels))

        return {
            "open_orders": gauge(
                "quantmesh_open_orders", "Live orders in the ledger (pending, unknown, open, partially filled).",
                (*SYMBOL_LABELS, "side"),
            ),
            "unknown_orders": gauge(
                "quantmesh_unknown_orders", "Orders whose placement reply was ambiguous and is not resolved yet."
            ),
            "filled_slots": gauge("quantmesh_filled_slots", "Grid slots holding a filled buy that is not sold yet."),
            "grid_holding": gauge("quantmesh_grid_holding", "Base amount held by the grid's filled slots."),
            "realized_pnl": gauge("quantmesh_realized_pnl", "Realised PnL of the grid slots, in quote currency."),
            "running": gauge("quantmesh_symbol_running", "1 while the symbol's status is running, else 0."),
            "paused": gauge("quantmesh_symbol_paused", "1 while the symbol is paused, else 0."),
            "reconcile_interval": gauge(
                "quantmesh_symbol_reconcile_interval_seconds", "The symbol's configured reconcile interval."
            ),
            "owner": gauge(
                "quantmesh_symbol_owner_info", "1 for the instance that holds the symbol's lease (multi-instance mode).",
                (*SYMBOL_LABELS, "instance"),
            ),
            "last_fill": gauge(
                "quantmesh_last_fill_timestamp_seconds", "Unix time of the newest trade of the symbol in the ledger."
            ),
            "reconcile_finished": gauge(
                "quantmesh_reconcile_last_finished_timestamp_seconds",
                "Unix time the newest reconcile pass that could run (clean, repaired or needing attention) ended.",
            ),
            "reconcile_unresolved": gauge(
                "quantmesh_reconcile_unresolved", "Discrepancies left to a person by the newest finished reconcile pass."
            ),
            "position": gauge("quantmesh_futures_position", "Futures: signed position at the newest snapshot."),
            "leverage": gauge("quantmesh_futures_leverage", "Futures: leverage at the newest snapshot."),
            "margin_ratio": gauge(
                "quantmesh_futures_margin_ratio", "Futures: maintenance margin / margin balance; 1 liquidates."
            ),
            "liquidation_price": gauge(
                "quantmesh_futures_liquidation_price", "Futures: the exchange's liquidation price of the position."
            ),
            "funding": gauge("quantmesh_futures_funding", "Futures: funding received minus paid, in quote currency."),
            "heartbeat_age": gauge(
                "quantmesh_instance_heartbeat_age_seconds",
                "Seconds since the last heartbeat of a bot instance that has not stopped cleanly.",
                ("instance", "lock_backend"),
            ),
            "collector_up": gauge("quantmesh_collector_up", "1 when the database could be read for this scrape.", ()),
            "collector_duration": gauge(
                "quantmesh_collector_duration_seconds", "Time the database queries of this scrape took.", ()
            ),
        }

    # --- the queries -------------------------------------------------------------------------------
    def _fill(self, families: dict[str, GaugeMetricFamily]) -> None:
        from django.db import connection

        opened_here = connection.connection is None
        try:
            self._query(families)
        finally:
            # A scrape served outside a request (e.g. a metrics thread) must not leave a connection
            # behind per thread; inside a request Django closes it when the request ends.
            if opened_here and not connection.in_atomic_block:
                connection.close()

    def _query(self, families: dict[str, GaugeMetricFamily]) -> None:
        from django.db.models import Count, Max
        from django.utils import timezone

        from reconciliation.models import ReconcileRun
        from trading.models import LIVE_STATUSES, BotInstance, Fill, GridSlot, Order, OrderStatus, Symbol

        # 1. symbols
        symbols: dict[int, tuple[str, str]] = {}
        for sid, account, name, status, interval, owner in Symbol.objects.values_list(
            "id", "account__name", "symbol", "status", "reconcile_interval", "owner_instance"
        ):
            labels = (account, name)
            symbols[sid] = labels
            families["running"].add_metric(labels, 1.0 if status == Symbol.Status.RUNNING else 0.0)
            families["paused"].add_metric(labels, 1.0 if status == Symbol.Status.PAUSED else 0.0)
            families["reconcile_interval"].add_metric(labels, float(interval))
            if owner:
                families["owner"].add_metric([*labels, owner], 1.0)

        # 2. live orders by symbol, side and status (one grouped count)
        open_orders: dict[tuple[int, str], int] = defaultdict(int)
        unknown: dict[int, int] = defaultdict(int)
        for sid, side, status, n in (
            Order.objects.filter(status__in=sorted(LIVE_STATUSES))
            .values_list("symbol_id", "side", "status")
            .annotate(n=Count("id"))
            .order_by()
        ):
            open_orders[(sid, side)] += n
            if status == OrderStatus.UNKNOWN:
                unknown[sid] += n
        for sid, labels in symbols.items():
            for side in ("buy", "sell"):
                families["open_orders"].add_metric([*labels, side], float(open_orders.get((sid, side), 0)))
            families["unknown_orders"].add_metric(labels, float(unknown.get(sid, 0)))

        # 3. slots: money summed here, as Decimals
        filled: dict[int, int] = defaultdict(int)
        holding: dict[int, Decimal] = defaultdict(Decimal)
        pnl: dict[int, Decimal] = defaultdict(Decimal)
        for sid, held, realized in GridSlot.objects.values_list("symbol_id", "holding", "realized_pnl").iterator():
            if held > 0:
                filled[sid] += 1
                holding[sid] += held
            pnl[sid] += realized
        for sid, labels in symbols.items():
            families["filled_slots"].add_metric(labels, float(filled.get(sid, 0)))
            families["grid_holding"].add_metric(labels, float(holding.get(sid, Decimal(0))))
            families["realized_pnl"].add_metric(labels, float(pnl.get(sid, Decimal(0))))

        # 4. newest fill per symbol
        for sid, at in Fill.objects.values_list("symbol_id").annotate(at=Max("traded_at")).order_by():
            if sid in symbols and at is not None:
                families["last_fill"].add_metric(symbols[sid], at.timestamp())

        # 5-6. reconcile: newest finished pass per symbol, and what it left unresolved
        finished = (ReconcileRun.Status.CLEAN, ReconcileRun.Status.REPAIRED, ReconcileRun.Status.ATTENTION)
        newest: dict[int, object] = {}
        for sid, at in (
            ReconcileRun.objects.filter(status__in=finished, finished_at__isnull=False)
            .values_list("symbol_id")
            .annotate(at=Max("finished_at"))
            .order_by()
        ):
            if sid in symbols and at is not None:
                newest[sid] = at
                families["reconcile_finished"].add_metric(symbols[sid], at.timestamp())
        if newest:
            latest_unresolved: dict[int, tuple[object, int]] = {}
            for sid, at, left in ReconcileRun.objects.filter(
                status__in=finished, symbol_id__in=list(newest), finished_at__in=list(set(newest.values()))
            ).values_list("symbol_id", "finished_at", "unresolved"):
                if newest.get(sid) == at:
                    previous = latest_unresolved.get(sid)
                    latest_unresolved[sid] = (at, max(left, previous[1]) if previous else left)
            for sid, (_, left) in latest_unresolved.items():
                families["reconcile_unresolved"].add_metric(symbols[sid], float(left))

        # 8-10. futures: the newest position snapshot per symbol, and funding summed as Decimals
        from trading.models import FundingPayment, PositionSnapshot

        latest = dict(PositionSnapshot.objects.values_list("symbol_id").annotate(at=Max("taken_at")).order_by())
        if latest:
            rows = PositionSnapshot.objects.filter(symbol_id__in=list(latest), taken_at__in=list(set(latest.values())))
            for snap in rows.order_by("id"):
                if snap.symbol_id not in symbols or latest.get(snap.symbol_id) != snap.taken_at:
                    continue
                labels = symbols[snap.symbol_id]
                families["position"].add_metric(labels, float(snap.qty))
                if snap.leverage is not None:
                    families["leverage"].add_metric(labels, float(snap.leverage))
                balance = snap.wallet_balance + snap.unrealized_pnl
                if balance > 0:
                    families["margin_ratio"].add_metric(labels, float(snap.maint_margin / balance))
                if snap.liquidation_price is not None:
                    families["liquidation_price"].add_metric(labels, float(snap.liquidation_price))
        funding: dict[int, Decimal] = defaultdict(Decimal)
        for sid, amount in FundingPayment.objects.values_list("symbol_id", "amount").iterator():
            funding[sid] += amount
        for sid, total in funding.items():
            if sid in symbols:
                families["funding"].add_metric(symbols[sid], float(total))

        # 7. instances that have not stopped
        now = timezone.now()
        for instance_id, backend, beat in BotInstance.objects.filter(stopped_at__isnull=True).values_list(
            "instance_id", "lock_backend", "last_heartbeat"
        ):
            families["heartbeat_age"].add_metric([instance_id, backend], max((now - beat).total_seconds(), 0.0))


_lock = threading.Lock()
# The name that marks the collector as registered: looked up on the registry itself, so a second
# import of this module (a reload, or two import paths) cannot register it twice.
_MARKER = "quantmesh_open_orders"


def register_collectors(registry: CollectorRegistry = REGISTRY) -> TradingStateCollector:
    """Register the database collector on `registry` (the default registry unless told), once per
    registry; later calls return the collector already registered."""
    with _lock:
        existing = registry._names_to_collectors.get(_MARKER)  # no public lookup by name exists
        if existing is not None:
            return cast(TradingStateCollector, existing)  # only this module registers under _MARKER
        collector = TradingStateCollector()
        registry.register(collector)
        return collector


def unregister_collectors(registry: CollectorRegistry = REGISTRY) -> None:
    """Undo `register_collectors` (tests)."""
    with _lock:
        existing = registry._names_to_collectors.get(_MARKER)
        if existing is not None:
            registry.unregister(existing)

"""Prometheus metrics of reconciliation."""
from __future__ import annotations

import time

from prometheus_client import Counter, Gauge

from trading.metrics import get_or_create

RUNS = get_or_create(Counter, "quantmesh_reconcile_runs_total", "Reconcile passes, by outcome.", ("symbol", "status"))
DISCREPANCIES = get_or_create(
    Counter, "quantmesh_reconcile_discrepancies_total", "Discrepancies found, by kind.", ("symbol", "kind")
)
LAST_SUCCESS = get_or_create(
    Gauge, "quantmesh_reconcile_last_success_timestamp_seconds", "When the last pass that could run finished.", ("symbol",)
)


def record_run(symbol: str, status: str) -> None:
    RUNS.labels(symbol, status).inc()


def record_outcome(outcome) -> None:
    record_run(outcome.symbol, outcome.status)
    for finding in outcome.findings:
        DISCREPANCIES.labels(outcome.symbol, finding.kind).inc()
    if outcome.status != "failed":
        LAST_SUCCESS.labels(outcome.symbol).set(time.time())

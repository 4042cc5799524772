"""The database collector's values, and the alert rules and dashboard against what is exported.

Every `quantmesh_*` series named in monitoring/alerts.yml or monitoring/grafana-dashboard.json must
be one the project exports: a counter as `<name>_total`, a histogram as `<name>_bucket`, `_count`
or `_sum`, a gauge under its own name. Label names used in selectors and in `by`/`on` clauses must
be labels of those metrics.
"""
from __future__ import annotations

import json
import re
from datetime import timedelta
from decimal import Decimal
from functools import cache
from pathlib import Path

import pytest
import yaml
from django.utils import timezone
from prometheus_client import REGISTRY, CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from tests.factories import make_account, make_symbol

ROOT = Path(__file__).resolve().parents[2]
ALERTS = ROOT / "monitoring" / "alerts.yml"
DASHBOARD = ROOT / "monitoring" / "grafana-dashboard.json"

METRIC_NAME = re.compile(r"\bquantmesh_[a-zA-Z0-9_]+")
# Labels every series has after the scrape, and the histogram bucket label.
TARGET_LABELS = {"job", "instance", "le"}


# --- scrape helpers -------------------------------------------------------------------------------

def scrape(registry: CollectorRegistry) -> dict[str, list[tuple[dict, float]]]:
    """sample name -> [(labels, value)] as Prometheus would read them."""
    text = generate_latest(registry).decode()
    samples: dict[str, list[tuple[dict, float]]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples.setdefault(sample.name, []).append((sample.labels, sample.value))
    return samples


def value(samples, name: str, **labels) -> float:
    matches = [v for found, v in samples.get(name, []) if all(found.get(k) == w for k, w in labels.items())]
    assert len(matches) == 1, f"{name}{labels}: {len(matches)} samples in {samples.get(name)}"
    return matches[0]


@pytest.fixture
def registry():
    from trading.collectors import register_collectors, unregister_collectors

    fresh = CollectorRegistry()
    register_collectors(fresh)
    yield fresh
    unregister_collectors(fresh)


def trade(symbol, writer, *, side, level, price, amount, trade_id, fee=Decimal("0"), when=None):
    """Place an order through the ledger and fill it completely."""
    from trading import services
    from trading.models import OrderStatus

    order = services.order_create_intent(symbol=symbol, writer=writer, side=side, level=level, price=price, amount=amount)
    services.order_transition(order, OrderStatus.OPEN, writer=writer, exchange_order_id=f"x-{trade_id}")
    services.fill_record(
        symbol=symbol, writer=writer, trade_id=trade_id, exchange_order_id=f"x-{trade_id}", side=side, price=price,
        amount=amount, fee=fee, fee_currency="USDT", is_maker=True, traded_at=when or timezone.now(),
    )
    return order


@pytest.fixture
def trading_rows(db):
    """Two symbols with orders, fills, slots, reconcile runs and bot instances."""
    from reconciliation.models import ReconcileRun
    from trading import services
    from trading.models import BotInstance, GridSlot, OrderStatus

    account = make_account()
    btc = make_symbol(account, symbol="BTC/USDT")
    eth = make_symbol(account, symbol="ETH/USDT", price_interval=Decimal("10"))
    writer = services.Writer("bot-1", 0)
    filled_at = timezone.now() - timedelta(minutes=5)

    # BTC: one round trip at level 3 (buy 0.001 @ 60000, sell @ 60100, fee 0.06 USDT on the sell),
    # one filled buy still held at level 2, two resting buys, one order with an ambiguous reply.
    trade(btc, writer, side="buy", level=3, price=Decimal("60000"), amount=Decimal("0.001"), trade_id="t1",
          when=filled_at - timedelta(minutes=2))
    trade(btc, writer, side="sell", level=3, price=Decimal("60100"), amount=Decimal("0.001"), trade_id="t2",
          fee=Decimal("0.06"), when=filled_at)
    trade(btc, writer, side="buy", level=2, price=Decimal("59900"), amount=Decimal("0.002"), trade_id="t3",
          when=filled_at - timedelta(minutes=1))
    for level in (0, 1):
        order = services.order_create_intent(symbol=btc, writer=writer, side="buy", level=level,
                                             price=Decimal("59700") + level * 100, amount=Decimal("0.001"))
        services.order_transition(order, OrderStatus.OPEN, writer=writer, exchange_order_id=f"open-{level}")
    in_doubt = services.order_create_intent(symbol=btc, writer=writer, side="buy", level=-1,
                                            price=Decimal("59600"), amount=Decimal("0.001"))
    services.order_transition(in_doubt, OrderStatus.UNKNOWN, writer=writer, note="timeout")
    # BTC's held buy at level 2 has its sell resting.
    sell = services.order_create_intent(symbol=btc, writer=writer, side="sell", level=2, price=Decimal("60000"),
                                        amount=Decimal("0.002"))
    services.order_transition(sell, OrderStatus.OPEN, writer=writer, exchange_order_id="open-sell-2")

    # ETH: paused, no orders; two slots whose PnL would not add up exactly as floats (0.1 + 0.2).
    GridSlot.objects.create(symbol=eth, level=1, realized_pnl=Decimal("0.1"))
    GridSlot.objects.create(symbol=eth, level=2, realized_pnl=Decimal("0.2"))
    services.symbol_pause(eth, reason="operator")

    # Reconcile: BTC's newest finished pass left 2 unresolved (a failed pass after it does not count).
    now = timezone.now()
    ReconcileRun.objects.create(symbol=btc, instance_id="celery:w", trigger="celery", status="clean",
                                started_at=now - timedelta(minutes=10), finished_at=now - timedelta(minutes=10))
    newest = ReconcileRun.objects.create(symbol=btc, instance_id="celery:w", trigger="celery", status="attention",
                                         unresolved=2, started_at=now - timedelta(minutes=3),
                                         finished_at=now - timedelta(minutes=2))
    ReconcileRun.objects.create(symbol=btc, instance_id="cron:x", trigger="cron", status="failed",
                                started_at=now - timedelta(minutes=1), finished_at=now - timedelta(minutes=1))

    # Instances: bot-1 beating, bot-2 silent for 90 s, bot-3 stopped cleanly (not exported).
    for instance_id, age, stopped in (("bot-1", 2, None), ("bot-2", 90, None), ("bot-3", 600, now)):
        BotInstance.objects.create(instance_id=instance_id, host="h", pid=1, version="t", lock_backend="redis",
                                   last_heartbeat=now - timedelta(seconds=age), stopped_at=stopped)
    btc.__class__.objects.filter(pk=btc.pk).update(owner_instance="bot-1", owner_token=7)
    return {"btc": btc, "eth": eth, "filled_at": filled_at, "newest_run": newest, "now": now}


# --- the collector --------------------------------------------------------------------------------

@pytest.mark.django_db
def test_collector_exports_the_ledger_state(registry, trading_rows):
    samples = scrape(registry)
    btc = {"account": "paper", "symbol": "BTC/USDT"}
    eth = {"account": "paper", "symbol": "ETH/USDT"}

    # Live orders: two resting buys plus the unknown one; one resting sell.
    assert value(samples, "quantmesh_open_orders", side="buy", **btc) == 3
    assert value(samples, "quantmesh_open_orders", side="sell", **btc) == 1
    assert value(samples, "quantmesh_open_orders", side="buy", **eth) == 0
    assert value(samples, "quantmesh_unknown_orders", **btc) == 1
    assert value(samples, "quantmesh_unknown_orders", **eth) == 0

    # Slots: level 2 holds 0.002; level 3 completed its round trip.
    assert value(samples, "quantmesh_filled_slots", **btc) == 1
    assert value(samples, "quantmesh_grid_holding", **btc) == 0.002
    assert value(samples, "quantmesh_filled_slots", **eth) == 0
    # (60100 - 60000) x 0.001 - 0.06 = 0.04
    assert value(samples, "quantmesh_realized_pnl", **btc) == 0.04
    # Summed as Decimals: exactly 0.3, not 0.30000000000000004.
    assert value(samples, "quantmesh_realized_pnl", **eth) == 0.3

    assert value(samples, "quantmesh_symbol_running", **btc) == 1
    assert value(samples, "quantmesh_symbol_paused", **btc) == 0
    assert value(samples, "quantmesh_symbol_running", **eth) == 0
    assert value(samples, "quantmesh_symbol_paused", **eth) == 1
    assert value(samples, "quantmesh_symbol_reconcile_interval_seconds", **btc) == 60
    assert value(samples, "quantmesh_symbol_owner_info", instance="bot-1", **btc) == 1
    assert [labels for labels, _ in samples["quantmesh_symbol_owner_info"]] == [{**btc, "instance": "bot-1"}]

    # The newest fill of BTC; ETH has none, so no sample rather than a zero timestamp.
    assert value(samples, "quantmesh_last_fill_timestamp_seconds", **btc) == pytest.approx(
        trading_rows["filled_at"].timestamp(), abs=1e-3
    )
    assert not [labels for labels, _ in samples["quantmesh_last_fill_timestamp_seconds"] if labels["symbol"] == "ETH/USDT"]

    newest = trading_rows["newest_run"]
    assert value(samples, "quantmesh_reconcile_last_finished_timestamp_seconds", **btc) == pytest.approx(
        newest.finished_at.timestamp(), abs=1e-3
    )
    assert value(samples, "quantmesh_reconcile_unresolved", **btc) == 2
    assert "ETH/USDT" not in {labels["symbol"] for labels, _ in samples.get("quantmesh_reconcile_unresolved", [])}

    ages = {labels["instance"]: v for labels, v in samples["quantmesh_instance_heartbeat_age_seconds"]}
    assert set(ages) == {"bot-1", "bot-2"}, "a cleanly stopped instance is not exported"
    assert 0 <= ages["bot-1"] < 30
    assert 90 <= ages["bot-2"] < 120
    assert value(samples, "quantmesh_collector_up") == 1


@pytest.mark.django_db
def test_collector_follows_the_database_between_scrapes(registry, trading_rows):
    from trading import services

    services.symbol_resume(trading_rows["eth"])
    samples = scrape(registry)
    assert value(samples, "quantmesh_symbol_paused", account="paper", symbol="ETH/USDT") == 0
    assert value(samples, "quantmesh_symbol_running", account="paper", symbol="ETH/USDT") == 1


@pytest.mark.django_db
def test_collector_keeps_the_scrape_alive_when_the_database_fails(registry, monkeypatch):
    from trading import collectors

    def broken(self, families):
        raise RuntimeError("database gone")

    monkeypatch.setattr(collectors.TradingStateCollector, "_query", broken)
    samples = scrape(registry)
    assert value(samples, "quantmesh_collector_up") == 0
    assert "quantmesh_open_orders" not in samples


@pytest.mark.django_db
def test_collector_query_count_does_not_grow_with_symbols(registry, trading_rows, django_assert_max_num_queries):
    with django_assert_max_num_queries(10):
        scrape(registry)
    for n in range(5):
        make_symbol(trading_rows["btc"].account, symbol=f"C{n}/USDT")
    with django_assert_max_num_queries(10):
        samples = scrape(registry)
    assert len(samples["quantmesh_symbol_running"]) == 7


@pytest.mark.django_db
def test_collector_exports_the_newest_futures_position_and_the_funding(registry, trading_rows):
    from trading import services
    from trading.exchange.types import FuturesAccount, FuturesPosition
    from trading.models import PositionSnapshot

    btc = trading_rows["btc"]
    older = FuturesPosition("BTC/USDT", Decimal("0.2"), Decimal("50000"), Decimal("50000"), Decimal("0"), None, "cross", 20)
    newer = FuturesPosition("BTC/USDT", Decimal("0.1"), Decimal("50000"), Decimal("49000"), Decimal("-100"),
                            Decimal("40160.6"), "cross", 10)
    account = FuturesAccount("USDT", Decimal("1000"), Decimal("900"), Decimal("400"), Decimal("490"),
                             Decimal("18"), Decimal("-100"))
    services.position_snapshot_record(btc, older, account)
    PositionSnapshot.objects.update(taken_at=timezone.now() - timedelta(minutes=1))
    services.position_snapshot_record(btc, newer, account)
    for tran, amount in (("1", "-0.5"), ("2", "0.2")):
        services.funding_record(symbol=btc, tran_id=tran, amount=Decimal(amount), asset="USDT", funded_at=timezone.now())
    samples = scrape(registry)
    labels = {"account": btc.account.name, "symbol": "BTC/USDT"}
    assert value(samples, "quantmesh_futures_position", **labels) == 0.1
    assert value(samples, "quantmesh_futures_leverage", **labels) == 10
    assert value(samples, "quantmesh_futures_liquidation_price", **labels) == 40160.6
    assert value(samples, "quantmesh_futures_margin_ratio", **labels) == 0.02  # 18 / (1000 - 100)
    assert value(samples, "quantmesh_futures_funding", **labels) == -0.3  # summed as Decimals


def test_register_collectors_is_idempotent():
    from trading.collectors import register_collectors, unregister_collectors

    fresh = CollectorRegistry()
    first = register_collectors(fresh)
    assert register_collectors(fresh) is first
    unregister_collectors(fresh)
    assert register_collectors(fresh) is not first
    unregister_collectors(fresh)


def test_django_setup_and_the_module_import_register_no_collector():
    """Registration belongs to the process that serves the database metrics (the web admin). If
    importing the module or starting Django registered it, every runbot's metrics port would export
    the same database series again, and the alerts would match them once per process."""
    import os
    import subprocess
    import sys

    code = (
        "import django; django.setup(); import trading.collectors; from prometheus_client import REGISTRY; "
        "print(sorted(n for n in REGISTRY._names_to_collectors if n.startswith('quantmesh_open_orders')))"
    )
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "tests.settings"}
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


@pytest.mark.django_db
def test_web_metrics_endpoint_serves_the_database_metrics(client, trading_rows):
    """django-prometheus serves /metrics from the default registry; the database collector must be
    registered in the web process for the alerts on orders, reconcile and heartbeats to work."""
    response = client.get("/metrics")
    assert response.status_code == 200
    body = response.content.decode()
    assert 'quantmesh_open_orders{account="paper",side="buy",symbol="BTC/USDT"} 3.0' in body, (
        "the web process does not export the database metrics: call trading.collectors.register_collectors() "
        "where the web app starts"
    )


# --- alert rules and dashboard against the exported names ----------------------------------------

@cache
def alert_rules() -> list[dict]:
    doc = yaml.safe_load(ALERTS.read_text())
    return [rule for group in doc["groups"] for rule in group["rules"]]


@cache
def dashboard() -> dict:
    return json.loads(DASHBOARD.read_text())


def dashboard_exprs() -> list[tuple[str, str]]:
    exprs = []

    def walk(panels):
        for panel in panels:
            for target in panel.get("targets", []):
                exprs.append((f"panel {panel['title']!r}", target["expr"]))
            walk(panel.get("panels", []))

    walk(dashboard()["panels"])
    for variable in dashboard()["templating"]["list"]:
        query = variable.get("query")
        if isinstance(query, dict):
            exprs.append((f"variable {variable['name']}", query["query"]))
    return exprs


def all_exprs() -> list[tuple[str, str]]:
    return [(f"alert {rule['alert']}", rule["expr"]) for rule in alert_rules()] + dashboard_exprs()


@pytest.fixture
def exported(registry, trading_rows) -> dict[str, set[str]]:
    """Every series name the project exports -> its label names.

    The default registry holds the process metrics once their modules are imported; the collector
    is on `registry` with rows present so it yields samples."""
    import locking.metrics  # noqa: F401
    import reconciliation.metrics  # noqa: F401
    import trading.metrics  # noqa: F401

    names: dict[str, set[str]] = {}
    suffixes = {"counter": ("_total",), "histogram": ("_bucket", "_count", "_sum"), "gauge": ("",),
                "summary": ("", "_count", "_sum"), "info": ("_info",)}
    for source in (REGISTRY, registry):
        for family in source.collect():
            if not family.name.startswith("quantmesh_"):
                continue
            labels = {key for sample in family.samples for key in sample.labels}
            collector = REGISTRY._names_to_collectors.get(family.name) if source is REGISTRY else None
            labels |= set(getattr(collector, "_labelnames", ()))
            for suffix in suffixes.get(family.type, ("",)):
                names[family.name + suffix] = labels
    return names


def referenced_metrics(expr: str) -> set[str]:
    return set(METRIC_NAME.findall(expr))


def test_expressions_were_found():
    exprs = all_exprs()
    assert len([e for e in exprs if e[0].startswith("alert")]) >= 8
    assert len([e for e in exprs if e[0].startswith("panel")]) >= 15
    assert all(referenced_metrics(expr) or "up{" in expr for _, expr in exprs)


@pytest.mark.django_db
def test_every_metric_in_alerts_and_dashboard_is_exported(exported):
    missing = sorted({
        f"{name} (in {where})" for where, expr in all_exprs() for name in referenced_metrics(expr) if name not in exported
    })
    assert missing == [], "not exported by the project: " + "; ".join(missing)


@pytest.mark.django_db
def test_label_names_in_expressions_belong_to_the_metrics(exported):
    problems = []
    for where, expr in all_exprs():
        metrics = referenced_metrics(expr)
        known = set().union(*(exported.get(name, set()) for name in metrics)) | TARGET_LABELS
        for name, matchers in re.findall(r"\b(quantmesh_[a-zA-Z0-9_]+)\s*\{([^}]*)\}", expr):
            for label in re.findall(r"([a-zA-Z_][a-zA-Z0-9_]*)\s*(?:=~|!~|!=|=)", matchers):
                if label not in exported.get(name, set()) | TARGET_LABELS:
                    problems.append(f"{where}: {name} has no label {label!r}")
        for clause in re.findall(r"\b(?:by|without|on|ignoring)\s*\(([^)]*)\)", expr):
            for label in filter(None, (part.strip() for part in clause.split(","))):
                if label not in known:
                    problems.append(f"{where}: label {label!r} is on none of {sorted(metrics)}")
    assert problems == [], "\n".join(problems)


def test_alert_rules_are_well_formed():
    names = [rule["alert"] for rule in alert_rules()]
    assert len(names) == len(set(names)), "alert names must be unique"
    for rule in alert_rules():
        assert rule["labels"]["severity"] in {"critical", "warning", "info"}, rule["alert"]
        assert rule["annotations"]["summary"], rule["alert"]
        if "for" in rule:
            assert re.fullmatch(r"\d+[smh]", rule["for"]), rule["alert"]
        expr = rule["expr"]
        assert expr.count("(") == expr.count(")"), f"{rule['alert']}: unbalanced parentheses"
        for window in re.findall(r"\[([^\]]+)\]", expr):
            assert re.fullmatch(r"\d+[smhd]", window), f"{rule['alert']}: range {window!r}"


def test_alerts_cover_the_operational_risks():
    by_metric = {name: rule["alert"] for rule in alert_rules() for name in referenced_metrics(rule["expr"])}
    for metric in (
        "quantmesh_lock_conflict_total",
        "quantmesh_lock_acquire_total",
        "quantmesh_reconcile_discrepancies_total",
        "quantmesh_reconcile_unresolved",
        "quantmesh_reconcile_last_finished_timestamp_seconds",
        "quantmesh_instance_heartbeat_age_seconds",
        "quantmesh_last_fill_timestamp_seconds",
        "quantmesh_symbol_paused",
        "quantmesh_exchange_request_seconds_bucket",
        "quantmesh_unknown_orders",
        "quantmesh_liquidation_distance_ratio",
    ):
        assert metric in by_metric, f"no alert uses {metric}"
    heartbeat = next(r for r in alert_rules() if r["alert"] == "QuantMeshInstanceHeartbeatMissing")
    assert re.search(r"quantmesh_instance_heartbeat_age_seconds\s*>\s*60\b", heartbeat["expr"])


def test_dashboard_is_a_grafana_dashboard_with_the_required_panels():
    board = dashboard()
    assert 36 <= board["schemaVersion"] <= 41
    ids = []

    def walk(panels):
        for panel in panels:
            ids.append(panel["id"])
            assert {"h", "w", "x", "y"} <= set(panel["gridPos"]), panel["title"]
            assert panel["gridPos"]["x"] + panel["gridPos"]["w"] <= 24, panel["title"]
            if panel["type"] != "row":
                assert panel["targets"], panel["title"]
                assert panel["datasource"]["uid"] == "${datasource}", panel["title"]
            walk(panel.get("panels", []))

    walk(board["panels"])
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    assert "datasource" in {v["name"] for v in board["templating"]["list"]}
    used = "\n".join(expr for _, expr in dashboard_exprs())
    for needle in (
        "quantmesh_orders_placed_total", "quantmesh_fills_total", "quantmesh_realized_pnl", "quantmesh_open_orders",
        "quantmesh_lock_acquire_total", "quantmesh_lock_conflict_total",
        "histogram_quantile(0.99, sum by (le, key) (rate(quantmesh_lock_hold_duration_seconds_bucket",
        "quantmesh_reconcile_runs_total", "quantmesh_reconcile_discrepancies_total",
        "quantmesh_instance_heartbeat_age_seconds",
        "histogram_quantile(0.5, sum by (le, method) (rate(quantmesh_exchange_request_seconds_bucket",
        "histogram_quantile(0.99, sum by (le, method) (rate(quantmesh_exchange_request_seconds_bucket",
    ):
        assert needle in used, f"the dashboard lacks {needle}"


def test_the_name_check_catches_an_unknown_metric(exported):
    """The check above is only worth something if a made-up or mis-suffixed name fails it."""
    for bogus in ("quantmesh_lock_conflict", "quantmesh_exchange_request_seconds", "quantmesh_open_orders_total",
                  "quantmesh_exchange_failures_total"):
        assert bogus not in exported
    assert "quantmesh_lock_conflict_total" in exported
    assert "quantmesh_lock_hold_duration_seconds_bucket" in exported


# --- promtool: the rules parse, and each alert fires on the series that should fire it -----------

def promtool() -> str:
    import shutil

    path = shutil.which("promtool")
    if path is None:
        from tests.services import missing_service

        missing_service("promtool is not installed (Debian/Ubuntu: apt-get install prometheus)")
    return path


def run_promtool(*args: str):
    import subprocess

    return subprocess.run([promtool(), *args], capture_output=True, text=True, timeout=120)


def test_promtool_accepts_the_rules_and_the_dashboard_queries(tmp_path):
    checked = run_promtool("check", "rules", str(ALERTS))
    assert checked.returncode == 0, checked.stdout + checked.stderr
    # Dashboard queries as recording rules: promtool parses every expression.
    rules = [
        {"record": f"dashboard:query_{index}", "expr": expr.replace("$symbol", ".*")}
        for index, (_, expr) in enumerate(dashboard_exprs())
        if not expr.startswith("label_values(")
    ]
    path = tmp_path / "dashboard-rules.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    checked = run_promtool("check", "rules", str(path))
    assert checked.returncode == 0, checked.stdout + checked.stderr


BTC = {"account": "paper", "symbol": "BTC/USDT"}
ETH = {"account": "paper", "symbol": "ETH/USDT"}


def series(name: str, labels: dict, values: str) -> dict:
    inner = ",".join(f'{key}="{value}"' for key, value in labels.items())
    return {"series": f"{name}{{{inner}}}", "values": values}


# One minute per step, 80 minutes. BTC runs with trouble everywhere; ETH is paused and quiet;
# bot-1 is healthy, bot-2 has stopped beating; runbot-2 is down.
ALERT_SCENARIO = [
    series("up", {"job": "quantmesh-runbot", "instance": "runbot-1:9101"}, "1x80"),
    series("up", {"job": "quantmesh-runbot", "instance": "runbot-2:9101"}, "0x80"),
    series("quantmesh_collector_up", {}, "0x80"),
    series("quantmesh_instance_heartbeat_age_seconds", {"instance": "bot-1", "lock_backend": "redis"}, "2x80"),
    series("quantmesh_instance_heartbeat_age_seconds", {"instance": "bot-2", "lock_backend": "redis"}, "90+60x80"),
    series("quantmesh_symbol_running", BTC, "1x80"),
    series("quantmesh_symbol_paused", BTC, "0x80"),
    series("quantmesh_symbol_running", ETH, "0x80"),
    series("quantmesh_symbol_paused", ETH, "1x80"),
    series("quantmesh_symbol_owner_info", {**ETH, "instance": "bot-1"}, "1x80"),
    series("quantmesh_symbol_reconcile_interval_seconds", BTC, "60x80"),
    series("quantmesh_symbol_reconcile_interval_seconds", ETH, "60x80"),
    series("quantmesh_reconcile_last_finished_timestamp_seconds", BTC, "0x80"),
    series("quantmesh_reconcile_unresolved", BTC, "2x80"),
    series("quantmesh_reconcile_discrepancies_total", {"symbol": "BTC/USDT", "kind": "missed_fill"}, "0+1x80"),
    series("quantmesh_unknown_orders", BTC, "1x80"),
    series("quantmesh_unknown_orders", ETH, "0x80"),
    series("quantmesh_last_fill_timestamp_seconds", BTC, "0x80"),
    series("quantmesh_liquidation_distance_ratio", {"symbol": "BTC/USDT"}, "0.3-0.004x80"),  # 0.1 at minute 50
    series("quantmesh_liquidation_distance_ratio", {"symbol": "ETH/USDT"}, "-1x80"),  # no position
    series("quantmesh_lock_acquire_total", {"key": "order:binance:BTC/USDT", "status": "error"}, "0+10x80"),
    series("quantmesh_lock_acquire_total", {"key": "order:binance:BTC/USDT", "status": "success"}, "0+100x80"),
    series("quantmesh_lock_conflict_total", {"key": "order:binance:BTC/USDT"}, "0+60x80"),
    *(
        series("quantmesh_exchange_request_seconds_bucket",
               {"exchange": "binance", "method": "create_order", "le": le}, values)
        for le, values in (("1", "0x80"), ("2.5", "0x80"), ("5", "0+10x80"), ("+Inf", "0+10x80"))
    ),
]

EXPECTED_ALERTS = {
    "QuantMeshTargetDown": [{"job": "quantmesh-runbot", "instance": "runbot-2:9101"}],
    "QuantMeshMetricsDatabaseUnreadable": [{}],
    "QuantMeshInstanceHeartbeatMissing": [{"instance": "bot-2", "lock_backend": "redis"}],
    "QuantMeshRunningSymbolWithoutOwner": [BTC],
    "QuantMeshLockBackendErrors": [{"key": "order:binance:BTC/USDT"}],
    "QuantMeshLockConflictRateHigh": [{"key": "order:binance:BTC/USDT"}],
    "QuantMeshReconcileUnresolved": [BTC],
    "QuantMeshReconcileDiscrepanciesFound": [{"symbol": "BTC/USDT", "kind": "missed_fill"}],
    "QuantMeshReconcileStale": [BTC],
    "QuantMeshNeverReconciled": [ETH],
    "QuantMeshSymbolPaused": [ETH],
    "QuantMeshOrdersInDoubt": [BTC],
    "QuantMeshNoFills": [BTC],
    "QuantMeshNearLiquidation": [{"symbol": "BTC/USDT"}],
    "QuantMeshExchangeLatencyHigh": [{"exchange": "binance", "method": "create_order"}],
}


def test_every_alert_fires_on_its_scenario_and_nowhere_else(tmp_path):
    """promtool's rule unit test: at minute 70 exactly the expected alerts fire, with exactly the
    expected labels (annotations are stripped from a copy; their templates are checked above)."""
    promtool()
    doc = yaml.safe_load(ALERTS.read_text())
    severities = {}
    for group in doc["groups"]:
        for rule in group["rules"]:
            rule.pop("annotations", None)
            severities[rule["alert"]] = rule["labels"]["severity"]
    assert sorted(severities) == sorted(EXPECTED_ALERTS), "every alert needs a scenario here, and only alerts that exist"
    rules = tmp_path / "alerts.yml"
    rules.write_text(yaml.safe_dump(doc))
    test = {
        "rule_files": [str(rules)],
        "evaluation_interval": "1m",
        "tests": [{
            "interval": "1m",
            "input_series": ALERT_SCENARIO,
            "alert_rule_test": [
                {"eval_time": "70m", "alertname": name,
                 "exp_alerts": [{"exp_labels": {**labels, "severity": severities[name]}} for labels in expected]}
                for name, expected in EXPECTED_ALERTS.items()
            ],
        }],
    }
    path = tmp_path / "alerts-test.yml"
    path.write_text(yaml.safe_dump(test, sort_keys=False))
    result = run_promtool("test", "rules", str(path))
    assert result.returncode == 0, result.stdout + result.stderr

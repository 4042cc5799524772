"""Reconciliation against the simulator: each kind of discrepancy is injected through the
simulator's controls, detected, and repaired or reported, with its run and rows stored."""
import json
from decimal import Decimal
from io import StringIO

import pytest
from django.core.management import call_command

from locking.nop import NopLock
from reconciliation.models import Discrepancy, ReconcileRun
from reconciliation.services import Reconciler
from trading import services
from trading.exchange import Ambiguous
from trading.exchange.accounts import gateway_for
from trading.models import Fill, GridSlot, Order, Symbol

pytestmark = pytest.mark.django_db(transaction=True)
D = Decimal


def reconcile(symbol, dry_run=False):
    symbol = Symbol.objects.select_related("account").get(pk=symbol.pk)
    return Reconciler(symbol, gateway_for(symbol.account), NopLock(), instance_id="test-reconciler",
                      trigger=ReconcileRun.Trigger.CRON, dry_run=dry_run).run()


def kinds(outcome):
    return sorted((f.kind, f.action) for f in outcome.findings)


@pytest.fixture
def trading(sim, make_engine, paper_symbol):
    """A bot that placed its first buys (levels -1 and -2) and then stopped."""
    engine = make_engine()
    engine.tick()
    first = reconcile(paper_symbol)  # records the account's base holdings outside the grid
    assert first.status == "clean", first.findings
    return engine


def test_clean_ledger_gives_a_clean_run(trading, paper_symbol):
    outcome = reconcile(paper_symbol)
    assert outcome.status == "clean" and outcome.findings == []
    run = ReconcileRun.objects.get(pk=outcome.run_id)
    assert (run.status, run.discrepancies, run.orders_checked, run.trigger) == ("clean", 0, 4, "cron")


def test_fill_while_the_bot_was_down_is_applied(trading, sim, paper_symbol):
    sim.engine.set_price("BTC/USDT", D("59800"))  # the buy at -1 fills; no bot is running
    outcome = reconcile(paper_symbol)
    assert kinds(outcome) == [("missed_fill", "repaired")]
    order = Order.objects.get(level=-1, side="buy")
    assert order.status == "filled" and order.filled_amount == order.amount
    assert GridSlot.objects.get(level=-1).holding == order.amount - order.amount * D("0.001")
    assert Discrepancy.objects.filter(run_id=outcome.run_id, kind="missed_fill", client_order_id=order.client_order_id).exists()
    assert reconcile(paper_symbol).findings == []  # applied once; a second pass finds nothing


def test_cancel_made_out_of_band_is_applied(trading, sim, paper_symbol):
    order = Order.objects.get(level=-2, side="buy")
    sim.engine.cancel_order("BTC/USDT", client_order_id=order.client_order_id)
    outcome = reconcile(paper_symbol)
    assert kinds(outcome) == [("final_state", "repaired")]
    order.refresh_from_db()
    assert order.status == "canceled" and order.active_slot is None


def test_order_accepted_with_its_reply_dropped_is_acknowledged(trading, sim, paper_symbol):
    symbol = Symbol.objects.get(pk=paper_symbol.pk)
    intent = services.order_create_intent(symbol=symbol, writer=services.Writer("crashed-bot", 0), side="buy",
                                          level=-3, price=D("59400"), amount=D("0.00084"))
    sim.drop_next()
    with pytest.raises(Ambiguous):  # the bot sends, loses the reply, and dies before resolving it
        gateway_for(symbol.account).create_limit_order(symbol="BTC/USDT", side="buy", amount=D("0.00084"),
                                                       price=D("59400"), client_order_id=intent.client_order_id, post_only=True)
    outcome = reconcile(symbol)
    assert kinds(outcome) == [("unacknowledged", "repaired")]
    intent.refresh_from_db()
    assert intent.status == "open" and intent.exchange_order_id


def test_orphan_with_our_prefix_is_adopted(trading, sim, paper_symbol):
    cid = f"qm-{paper_symbol.pk}-bm4-0"
    sim.engine.place_order("BTC/USDT", "BUY", "LIMIT", D("0.00084"), D("59200"), cid)
    outcome = reconcile(paper_symbol)
    assert kinds(outcome) == [("orphan", "adopted")]
    adopted = Order.objects.get(client_order_id=cid)
    assert (adopted.status, adopted.level, adopted.side, adopted.price) == ("open", -4, "buy", D("59200"))
    assert adopted.active_slot == f"{paper_symbol.pk}:-4:buy"


def test_foreign_order_is_reported_and_left_alone(trading, sim, paper_symbol):
    sim.engine.place_order("BTC/USDT", "BUY", "LIMIT", D("0.001"), D("50000"), "web_manual_1", foreign=True)
    outcome = reconcile(paper_symbol)
    assert kinds(outcome) == [("foreign", "reported")]
    assert outcome.status == "attention"
    assert not Order.objects.filter(client_order_id="web_manual_1").exists()
    assert [o.client_order_id for o in sim.engine.open_orders() if o.client_order_id == "web_manual_1"] == ["web_manual_1"]


def test_balance_drift_is_reported_and_pauses_past_one_grid_order(trading, sim, paper_symbol):
    btc = sim.engine.balance("BTC").free
    sim.engine.set_balance("BTC", btc + D("0.00001") * 5)  # worth about 3 USDT: report only
    outcome = reconcile(paper_symbol)
    assert kinds(outcome) == [("balance_drift", "reported")]
    assert Symbol.objects.get(pk=paper_symbol.pk).status == "running"
    sim.engine.set_balance("BTC", btc + D("0.01"))  # worth about 600 USDT: more than one 50 USDT order
    outcome = reconcile(paper_symbol)
    assert kinds(outcome) == [("balance_drift", "paused")]
    symbol = Symbol.objects.get(pk=paper_symbol.pk)
    assert symbol.status == "paused" and "balance drift" in symbol.pause_reason


def test_dry_run_changes_nothing(trading, sim, paper_symbol):
    sim.engine.set_price("BTC/USDT", D("59800"))
    sim.engine.cancel_order("BTC/USDT", client_order_id=Order.objects.get(level=-2).client_order_id)
    runs, fills, events = ReconcileRun.objects.count(), Fill.objects.count(), list(Order.objects.values_list("status", flat=True))
    outcome = reconcile(paper_symbol, dry_run=True)
    assert {f.kind for f in outcome.findings} == {"missed_fill", "final_state"}
    assert all(f.action == "none" for f in outcome.findings)
    assert (ReconcileRun.objects.count(), Fill.objects.count()) == (runs, fills)
    assert list(Order.objects.values_list("status", flat=True)) == events


def run_command(*args):
    out, err = StringIO(), StringIO()
    try:
        call_command("reconcile", *args, stdout=out, stderr=err)
        code = 0
    except SystemExit as exc:
        code = exc.code
    return code, out.getvalue(), err.getvalue()


def test_command_exit_codes(trading, sim, paper_symbol, settings):
    code, out, _ = run_command("--symbol", "BTC/USDT", "--json")
    assert code == 0 and json.loads(out)[0]["status"] == "clean"
    sim.engine.set_price("BTC/USDT", D("59800"))
    code, out, _ = run_command("--all")
    assert code == 0 and "repaired" in out
    sim.engine.place_order("BTC/USDT", "BUY", "LIMIT", D("0.001"), D("50000"), "web_manual_2", foreign=True)
    code, out, _ = run_command("--symbol", "BTC/USDT")
    assert code == 1 and "foreign" in out


def test_command_refuses_an_unknown_symbol_with_exit_2(trading):
    from django.core.management.base import CommandError

    with pytest.raises(CommandError) as excinfo:
        call_command("reconcile", "--symbol", "NOPE/USDT")
    assert excinfo.value.returncode == 2 and "NOPE/USDT" in str(excinfo.value)


def test_command_exits_2_when_the_exchange_is_down(trading, sim, paper_symbol):
    sim.fail_next(path="/api/v3/openOrders", count=5, status=503)
    code, _, err = run_command("--symbol", "BTC/USDT")
    assert code == 2 and "BTC/USDT" in err

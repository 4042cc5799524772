"""The admin's order actions: cancel through the engine and the cancel lock (against the
simulator), and CSV exports with exact Decimals."""
import csv
import io
import re
import uuid
from decimal import Decimal

import pytest

from tests.dashboard.conftest import WRITER, open_order, trade
from trading import admin_actions, exports, services
from trading.models import Fill, Order, OrderEvent, OrderStatus

pytestmark = pytest.mark.django_db

ORDERS = "/admin/trading/order/"


def run_action(client, url: str, action: str, ids):
    return client.post(url, {"action": action, "_selected_action": [str(i) for i in ids]}, follow=True)


def messages_of(response) -> list[str]:
    """The messages shown on the page the action led to (showing them consumes them)."""
    assert response.redirect_chain and response.status_code == 200
    return [str(m) for m in response.context["messages"]]


def csv_rows(response) -> list[list[str]]:
    body = b"".join(response.streaming_content).decode("utf-8")
    return list(csv.reader(io.StringIO(body)))


@pytest.fixture
def trading_engine(make_engine):
    """An engine that has placed its first buys (levels -1 and -2 below 60000) on the simulator."""
    engine = make_engine()
    engine.tick()
    assert Order.objects.filter(status=OrderStatus.OPEN, side="buy").count() == 2
    return engine


def test_cancel_selected_orders_through_the_exchange(admin_client, trading_engine, sim):
    sim.engine.set_price("BTC/USDT", Decimal("59790"))  # fills the buy at 59800
    trading_engine.tick()
    filled = Order.objects.get(side="buy", level=-1, status=OrderStatus.FILLED)
    sell = Order.objects.get(side="sell", level=-1, status=OrderStatus.OPEN)
    live = list(Order.objects.filter(side="buy", status=OrderStatus.OPEN).order_by("level"))
    assert [o.level for o in live] == [-3, -2]

    response = run_action(admin_client, ORDERS, "cancel_selected_orders", [o.pk for o in [filled, *live]])

    notes = messages_of(response)
    assert notes == [f"Canceled 2 order(s): {live[0].client_order_id}, {live[1].client_order_id}.",
                     f"Not canceled, already filled: {filled.client_order_id}."]
    for order in live:
        order.refresh_from_db()
        assert order.status == OrderStatus.CANCELED and order.active_slot is None
        event = OrderEvent.objects.filter(order=order, to_status=OrderStatus.CANCELED).get()
        assert event.instance_id == "admin:admin" and "canceled from the admin by admin" in event.note
    assert Order.objects.get(pk=sell.pk).status == OrderStatus.OPEN  # not selected: untouched
    remote = {o["clientOrderId"]: o["status"] for o in sim.engine.ledger("BTC/USDT")}
    assert [remote[o.client_order_id] for o in (*live, sell, filled)] == ["CANCELED", "CANCELED", "NEW", "FILLED"]


def test_cancel_needs_a_reachable_exchange(admin_client, trading_engine, paper_symbol):
    order = Order.objects.filter(status=OrderStatus.OPEN).first()
    account = paper_symbol.account
    account.base_url = "http://127.0.0.1:9"  # nothing listens on the discard port
    account.save()
    response = run_action(admin_client, ORDERS, "cancel_selected_orders", [order.pk])
    assert messages_of(response) == [
        f"Not canceled, not confirmed by the exchange; the next sync resolves it: {order.client_order_id}."]
    order.refresh_from_db()
    assert order.status == OrderStatus.OPEN and order.cancel_requested_at is not None

    account.paper, account.base_url = False, ""
    account.save()
    response = run_action(admin_client, ORDERS, "cancel_selected_orders", [order.pk])
    (note,) = messages_of(response)
    assert note.startswith("Not canceled, not sent: account paper is live but QM_LIVE_TRADING is off")
    assert note.endswith(f": {order.client_order_id}.")
    assert Order.objects.get(pk=order.pk).status == OrderStatus.OPEN


def test_cancel_waits_for_a_busy_cancel_lock(admin_client, trading_engine, redis_url, settings):
    from locking.setup import lock_service_from_settings
    from trading.lockkeys import cancel_lock_key

    settings.QM_LOCK_BACKEND = "redis"
    settings.REDIS_URL = redis_url
    settings.QM_LOCK_NAMESPACE = f"qm-test-dashboard-{uuid.uuid4().hex[:8]}:"
    order = Order.objects.filter(status=OrderStatus.OPEN).first()
    bot = lock_service_from_settings(instance_id="bot-a")
    try:
        grant = bot.try_lock(cancel_lock_key(trading_engine.exchange_id, "BTC/USDT", order.client_order_id), 30)
        assert grant is not None
        response = run_action(admin_client, ORDERS, "cancel_selected_orders", [order.pk])
        assert messages_of(response) == [
            f"Not canceled, cancel lock busy (another process is canceling it): {order.client_order_id}."]
        assert Order.objects.get(pk=order.pk).status == OrderStatus.OPEN
        bot.unlock(grant)
        response = run_action(admin_client, ORDERS, "cancel_selected_orders", [order.pk])
        assert messages_of(response)[0].startswith("Canceled 1 order(s)")
        assert Order.objects.get(pk=order.pk).status == OrderStatus.CANCELED
    finally:
        bot.close()


def test_a_cancel_of_too_many_orders_sends_nothing(admin_client, trading_engine, monkeypatch):
    monkeypatch.setattr(admin_actions, "CANCEL_MAX_ORDERS", 1)
    ids = list(Order.objects.filter(status=OrderStatus.OPEN).values_list("pk", flat=True))
    response = run_action(admin_client, ORDERS, "cancel_selected_orders", ids)
    assert messages_of(response) == ["Select at most 1 orders to cancel at once; nothing was sent."]
    assert Order.objects.filter(pk__in=ids, status=OrderStatus.OPEN).count() == 2


def test_the_service_reports_each_order(trading_engine, admin_user):
    orders = list(Order.objects.filter(status=OrderStatus.OPEN).order_by("level"))
    outcomes = admin_actions.orders_cancel_from_admin(orders[:1], admin_user)
    assert outcomes == [admin_actions.CancelOutcome(orders[0].client_order_id, True, "canceled")]
    outcomes = admin_actions.orders_cancel_from_admin(orders[:1], admin_user)
    assert outcomes == [admin_actions.CancelOutcome(orders[0].client_order_id, False, "already canceled")]


DECIMAL = re.compile(r"^-?\d+\.\d+$")


def test_export_orders_csv_keeps_decimals_exact(admin_client, symbol):
    buy = open_order(symbol, "buy", -1, "59800.01", "0.00083", "1")
    odd = services.order_create_intent(symbol=symbol, writer=WRITER, side="buy", level=-2, price=Decimal("59600"),
                                       amount=Decimal("0.000000000000000001"))
    services.order_transition(odd, OrderStatus.REJECTED, writer=WRITER, last_error='=HYPERLINK("http://x")')
    trade(symbol, buy, "t1", "59800.01", "0.0005", "0.000000000000000123", "BTC", minutes=1)

    response = run_action(admin_client, ORDERS, "export_orders_csv", [buy.pk, odd.pk])

    assert response.status_code == 200 and response.streaming and not response.redirect_chain
    assert response["Content-Type"] == "text/csv; charset=utf-8"
    assert re.fullmatch(r'attachment; filename="orders-\d{8}-\d{6}\.csv"', response["Content-Disposition"])
    header, *rows = csv_rows(response)
    assert header == exports.ORDER_COLUMNS
    by_cid = {row[header.index("client_order_id")]: dict(zip(header, row)) for row in rows}
    first, second = by_cid[buy.client_order_id], by_cid[odd.client_order_id]
    assert (first["side"], first["level"], first["status"]) == ("buy", "-1", "partially_filled")
    for name, expected in [("price", "59800.01"), ("amount", "0.00083"), ("filled_amount", "0.0005"),
                           ("average_price", "59800.01"), ("fee", "0.000000000000000123")]:
        assert DECIMAL.match(first[name]), (name, first[name])
        assert Decimal(first[name]) == Decimal(expected), name
    assert Decimal(second["amount"]) == Decimal("1E-18") and DECIMAL.match(second["amount"])
    assert DECIMAL.match(second["fee"]) and Decimal(second["fee"]) == 0  # never "0E-18"
    assert second["average_price"] == "" and second["level"] == "-2"
    assert second["last_error"] == "'" + '=HYPERLINK("http://x")'  # not run as a formula by a spreadsheet
    assert not any("E" in cell for row in rows for name, cell in zip(header, row) if name in (
        "price", "amount", "filled_amount", "fee"))


def test_export_fills_csv(admin_client, symbol):
    buy = open_order(symbol, "buy", -1, "59800", "0.00083", "1")
    trade(symbol, buy, "t1", "59800", "0.00083", "0.049634", "USDT", minutes=1)
    trade(symbol, None, "t2", "59900", "0.5", "0", "USDT", minutes=2)
    ids = list(Fill.objects.values_list("pk", flat=True))
    response = run_action(admin_client, "/admin/trading/fill/", "export_fills_csv", ids)
    header, *rows = csv_rows(response)
    assert header == exports.FILL_COLUMNS
    table = {row[header.index("exchange_trade_id")]: dict(zip(header, row)) for row in rows}
    assert table["t1"]["client_order_id"] == buy.client_order_id and table["t2"]["client_order_id"] == ""
    assert Decimal(table["t1"]["fee"]) == Decimal("0.049634") and DECIMAL.match(table["t1"]["fee"])
    assert table["t1"]["traded_at"] == "2026-03-01T12:01:00+00:00"
    assert table["t1"]["is_maker"] == "true"
    assert table["t2"]["fee"] == "0." + "0" * 18

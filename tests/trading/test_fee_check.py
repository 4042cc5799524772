"""A grid whose step does not cover the round-trip fees is refused before it trades: loadconfig
imports it paused, the admin form says why, runbot pauses it at start; allow_unprofitable lets it."""
from __future__ import annotations

from decimal import Decimal as D
from io import StringIO

import pytest
from django.core.management import call_command

from trading.models import ExchangeAccount, Symbol

pytestmark = pytest.mark.django_db

CONFIG = """
trading:
  symbols:
    - symbol: "BTCUSDT"
      price_interval: {interval}
      order_quantity: 50
      min_order_value: 10
      buy_window_size: 5
      sell_window_size: 5
"""


def test_loadconfig_imports_an_unprofitable_grid_paused_and_says_why(tmp_path):
    path = tmp_path / "config.yaml"
    path.write_text(CONFIG.format(interval=50))
    out = StringIO()
    call_command("loadconfig", str(path), stdout=out)
    symbol = Symbol.objects.get(symbol="BTC/USDT")
    assert symbol.status == Symbol.Status.PAUSED
    assert symbol.pause_reason.startswith("fee check: this grid loses on every round trip: price_interval 50 is 0.08 %")
    text = out.getvalue()
    assert "of the price 60000, and a round trip pays the fee 0.10 % twice" in text
    assert "Widen price_interval (above 120.19)" in text and "allow_unprofitable" in text


def test_loadconfig_starts_a_grid_that_covers_its_fees(tmp_path):
    path = tmp_path / "config.yaml"
    path.write_text(CONFIG.format(interval=150))
    call_command("loadconfig", str(path), stdout=StringIO())
    assert Symbol.objects.get(symbol="BTC/USDT").status == Symbol.Status.RUNNING


def test_the_admin_form_refuses_it_unless_allowed(admin_client):
    account = ExchangeAccount.objects.create(name="paper", exchange_id="binance", paper=True)
    form = {"account": account.pk, "symbol": "BTC/USDT", "price_interval": "100", "order_quantity": "50",
            "min_order_value": "10", "buy_window_size": "5", "sell_window_size": "5", "reconcile_interval": "60",
            "order_cleanup_threshold": "50", "cleanup_batch_size": "10", "margin_lock_duration_seconds": "10",
            "position_safety_check": "0", "max_grid_layers": "0", "stop_loss_ratio": "0", "max_leverage": "10",
            "liquidation_buffer": "0.05", "margin_mode": ""}
    page = admin_client.post("/admin/trading/symbol/add/", form)
    assert page.status_code == 200 and not Symbol.objects.exists()
    assert b"price_interval 100 is 0.17 % of the price 60000" in page.content
    page = admin_client.post("/admin/trading/symbol/add/", {**form, "allow_unprofitable": "on"})
    assert page.status_code == 302, page.content[:2000]
    assert Symbol.objects.get().allow_unprofitable


@pytest.mark.django_db(transaction=True)
def test_runbot_pauses_it_at_start_with_the_live_price():
    account = ExchangeAccount.objects.create(name="paper", exchange_id="binance", paper=True)
    losing = Symbol.objects.create(account=account, symbol="BTC/USDT", price_interval=D("100"), order_quantity=D("50"),
                                   min_order_value=D("10"), position_safety_check=0)
    out = StringIO()
    call_command("runbot", "--duration", "1", "--no-streams", "--status-interval", "5", stdout=out)
    losing.refresh_from_db()
    assert losing.status == Symbol.Status.PAUSED and losing.pause_reason.startswith("fee check: ")
    assert "BTC/USDT: not trading: this grid loses on every round trip" in out.getvalue()
    assert not losing.orders.exists()

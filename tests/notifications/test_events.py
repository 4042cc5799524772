"""Each event family, raised by the code that sees it, reaches the operator through real apprise:
a JSON webhook and an SMTP server on 127.0.0.1 both get the text."""
from __future__ import annotations

from datetime import UTC, timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

from locking.nop import NopLock
from notifications.models import Notification
from reconciliation.models import ReconcileRun
from reconciliation.services import Reconciler
from trading import liveness, services, summary
from trading.exchange.accounts import gateway_for
from trading.exchange.session import LocalState, RequestBudget
from trading.leases import LeaseKeeper
from trading.models import BotInstance, Symbol

pytestmark = pytest.mark.django_db(transaction=True)
D = Decimal


@pytest.fixture
def both(install_hub, webhook, smtp):
    """A hub delivering every family to the webhook and to the mailbox."""
    return install_hub(webhook.url(), smtp.url(), levels={f: 0 for f in
                       ("lifecycle", "trades", "symbols", "instances", "reconcile", "exchange", "summary")})


def delivered(hub, webhook, smtp, event: str) -> str:
    """The one message of `event`: its text, the same by webhook and by mail."""
    assert hub.flush(30), "the sender did not finish"
    row = Notification.objects.get(event=event)
    assert row.status == "delivered", row.channels
    assert [c["channel"] for c in row.channels] == ["json#1", "mailto#1"]
    posts = [p for p in webhook.posts if p["title"] == row.title]
    mails = [m for m in smtp.mails if m["subject"] == row.title]
    assert len(posts) == 1 and len(mails) == 1, (posts, [m["subject"] for m in smtp.mails])
    assert posts[0]["message"] == row.text
    assert smtp.text_of(mails[0]).splitlines() == row.text.splitlines()
    return row.text


def test_symbol_paused_resumed_and_stopped(both, webhook, smtp, paper_symbol):
    services.symbol_pause(paper_symbol, reason="stop loss: unrealised loss 0.0612 of position value >= 0.05")
    services.symbol_pause(paper_symbol, reason="again, while paused")  # no second message
    assert "BTC/USDT@paper paused: stop loss: unrealised loss 0.0612" in delivered(both, webhook, smtp, "symbol_paused")
    services.symbol_resume(paper_symbol, by="from the admin by alice")
    assert delivered(both, webhook, smtp, "symbol_resumed") == "BTC/USDT@paper resumed (from the admin by alice)"
    services.symbol_stop(paper_symbol, by="from the admin by alice")
    assert "BTC/USDT@paper stopped (from the admin by alice)" in delivered(both, webhook, smtp, "symbol_stopped")


def test_round_trips_from_the_ledger(both, webhook, smtp, make_engine, sim, paper_symbol):
    engine = make_engine()
    engine.tick()
    sim.engine.set_price("BTC/USDT", D("59800"))  # the buy at -1 fills
    engine.tick()
    sim.engine.set_price("BTC/USDT", D("60000"))  # and its sell one interval up
    engine.tick()
    text = delivered(both, webhook, smtp, "round_trips")
    realised = Symbol.objects.get(pk=paper_symbol.pk).slots.get(level=-1).realized_pnl
    assert realised > 0
    assert text.startswith("BTC/USDT@paper: 1 round trip since ")
    assert text.endswith(f", realised {realised:+.4f} USDT after fees")  # the buy's fee and the sell's


def test_bot_started_and_stopped(both, webhook, smtp, paper_symbol, sim):
    from trading.runner import Bot, BotOptions

    bot = Bot([Symbol.objects.select_related("account").get(pk=paper_symbol.pk)], NopLock(),
              BotOptions(instance_id="notify-bot", tick_interval=0.05, status_interval=3600, streams=False,
                         reconcile=False), out=lambda line: None)
    bot.run_until_stopped(duration=0.3)
    started = delivered(both, webhook, smtp, "bot_started")
    assert started.startswith("notify-bot started (single-instance, version ") and "BTC/USDT@paper" in started
    assert delivered(both, webhook, smtp, "bot_stopped") == "notify-bot stopped: its duration of 0.3s was reached"


def test_lease_taken_over_and_instance_silent(both, webhook, smtp, paper_symbol):
    now = timezone.now()
    BotInstance.objects.create(instance_id="bot-a", host="h1", pid=11, lock_backend="redis", started_at=now,
                               last_heartbeat=now - timedelta(seconds=45))
    Symbol.objects.filter(pk=paper_symbol.pk).update(owner_instance="bot-a", owner_token=3, owner_since=now)
    keeper = LeaseKeeper(NopLock(), "bot-b", ttl_ms=10_000)
    assert keeper.acquire(Symbol.objects.get(pk=paper_symbol.pk), "binance") is not None
    taken = delivered(both, webhook, smtp, "lease_taken_over")
    assert taken.startswith("bot-b took over BTC/USDT@paper from bot-a")
    assert liveness.report_silent("bot-b") == 1
    assert liveness.report_silent("cron") == 1  # seen again: the same silence, not sent again
    silent = delivered(both, webhook, smtp, "instance_silent")
    assert silent.startswith("instance bot-a (pid 11 on h1) has sent no heartbeat for 4")
    assert "the other instances take its symbols over" in silent


def test_reconcile_that_needs_a_person(both, webhook, smtp, make_engine, sim, paper_symbol):
    make_engine().tick()
    sim.engine.place_order("BTC/USDT", "BUY", "LIMIT", D("0.001"), D("50000"), "web_manual_1", foreign=True)
    symbol = Symbol.objects.select_related("account").get(pk=paper_symbol.pk)
    outcome = Reconciler(symbol, gateway_for(symbol.account), NopLock(), instance_id="cron",
                         trigger=ReconcileRun.Trigger.CRON).run()
    assert outcome.status == "attention"
    text = delivered(both, webhook, smtp, "reconcile_attention")
    assert text.startswith(f"BTC/USDT@paper: reconcile (cron) found {len(outcome.findings)} discrepancies, 1 need a person")
    assert "foreign reported web_manual_1" in text


@pytest.mark.parametrize("status, kind, words", [
    (429, "rate_limited", "account paper: 429 request weight limit, held 30s"),
    (418, "ip_banned", "account paper: 418 IP BANNED by the exchange for 120s"),
])
def test_the_exchange_limiting_or_banning_the_account(both, webhook, smtp, status, kind, words):
    budget = RequestBudget("paper", LocalState())
    seconds = "30" if status == 429 else "120"
    budget.after(status, {"Retry-After": seconds}, '{"code": -1003, "msg": "Too much request weight used"}')
    budget.after(status, {"Retry-After": seconds}, '{"code": -1003, "msg": "Too much request weight used"}')
    assert delivered(both, webhook, smtp, kind).startswith(words)  # one message for the two replies


def test_daily_summary(install_hub, webhook, smtp, make_engine, sim, paper_symbol):
    engine = make_engine()
    engine.tick()
    sim.engine.set_price("BTC/USDT", D("59800"))
    engine.tick()
    sim.engine.set_price("BTC/USDT", D("60000"))
    engine.tick()
    at = (timezone.now().astimezone(UTC) + timedelta(hours=1)).replace(minute=5, second=0, microsecond=0)
    hub = install_hub(webhook.url(), smtp.url(), summary_hour=at.hour)
    keys = summary.send_due([paper_symbol.account], now=at)
    assert keys == [f"summary:{paper_symbol.account.pk}:{at:%Y-%m-%dT%H}"]
    assert summary.send_due([paper_symbol.account], now=at) == []  # offered once
    assert summary.send_due([paper_symbol.account], now=at + timedelta(hours=2)) == []  # too late for the next
    text = delivered(hub, webhook, smtp, "daily_summary")
    realised = Symbol.objects.get(pk=paper_symbol.pk).slots.get(level=-1).realized_pnl
    lines = text.splitlines()
    end = at.replace(minute=0)  # the summary hour
    assert lines[0] == f"account paper, {end - timedelta(days=1):%Y-%m-%d %H:%M} to {end:%Y-%m-%d %H:%M} UTC"
    assert lines[1].startswith(f"BTC/USDT (running): 1 round trips, realised {realised:+.4f} USDT, fees ")
    assert lines[1].endswith("open orders")
    assert lines[2].startswith(f"total: 1 round trips, realised {realised:+.4f} USDT")

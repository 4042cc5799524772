"""A running bot tells the operator what needs them: a paper run whose fall triggers the stop
loss, repeated exchange errors, streams down past the threshold and back."""
from __future__ import annotations

import threading
from contextlib import contextmanager
from decimal import Decimal

import pytest

from locking.nop import NopLock
from notifications.models import Notification
from tests.procs import wait_for
from trading.models import ExchangeAccount, Order, Symbol
from trading.runner import Bot, BotOptions
from trading.simulator import MarketSpec, SimConfig, SimulatorServer

pytestmark = pytest.mark.django_db(transaction=True)
D = Decimal


@contextmanager
def running(symbol, **options):
    options = {"tick_interval": 0.05, "status_interval": 3600, "streams": False, "reconcile": False,
               "heartbeat_interval": 0.1, "watch_interval": 0.1, **options}
    bot = Bot([Symbol.objects.select_related("account").get(pk=symbol.pk)], NopLock(),
              BotOptions(instance_id="notify-bot", **options), out=lambda line: None)
    thread = threading.Thread(target=bot.run_until_stopped, daemon=True)
    thread.start()
    try:
        wait_for(lambda: Order.objects.filter(symbol=symbol, side="buy", status="open").count() >= 2, what="first buys")
        yield bot
    finally:
        bot.stop("the test is over")
        thread.join(timeout=30)


def kinds(webhook) -> list[str]:
    """The event of each message, from its title (QuantMesh · subject · title)."""
    titles = {"paused": "symbol_paused", "resumed": "symbol_resumed", "bot started": "bot_started",
              "bot stopped": "bot_stopped", "round trips": "round_trips"}
    return [titles.get(p["title"].rsplit(" · ", 1)[-1], p["title"]) for p in webhook.posts]


def test_a_fall_to_the_stop_loss_gives_one_message_and_one_for_the_resume(install_hub, webhook, sim, paper_symbol,
                                                                          admin_client):
    hub = install_hub(webhook.url())
    Symbol.objects.filter(pk=paper_symbol.pk).update(stop_loss_ratio=D("0.05"))
    with running(paper_symbol) as bot:
        run = bot.runs[paper_symbol.pk]
        sim.engine.set_price("BTC/USDT", D("56000"))  # the buys fill; 6 % under their cost
        wait_for(lambda: Symbol.objects.get(pk=paper_symbol.pk).status == "paused", what="the stop loss")
        ticks = run.ticks
        wait_for(lambda: run.ticks >= ticks + 10, what="ticks while paused")  # each checks the status again
        sim.engine.set_price("BTC/USDT", D("59900"))  # the price comes back; the operator resumes
        admin_client.post("/admin/trading/symbol/", {"action": "resume_symbols", "_selected_action": [paper_symbol.pk]})
        assert Symbol.objects.get(pk=paper_symbol.pk).status == "running"
        ticks = run.ticks
        wait_for(lambda: run.ticks >= ticks + 10, what="ticks after the resume")
    assert hub.flush(30)
    assert Symbol.objects.get(pk=paper_symbol.pk).status == "running"
    assert sorted(kinds(webhook)) == ["bot_started", "bot_stopped", "symbol_paused", "symbol_resumed"]
    paused = next(p["message"] for p in webhook.posts if p["title"].endswith("· paused"))
    assert paused.startswith("BTC/USDT@paper paused: stop loss: unrealised loss 0.06")
    resumed = next(p["message"] for p in webhook.posts if p["title"].endswith("· resumed"))
    assert resumed == "BTC/USDT@paper resumed (from the admin by admin)"
    assert Notification.objects.filter(status="delivered").count() == 4


def test_repeated_exchange_errors_give_one_message(install_hub, webhook, sim, paper_symbol):
    hub = install_hub(webhook.url(), error_streak=3)
    with running(paper_symbol) as bot:
        run = bot.runs[paper_symbol.pk]
        sim.fail_next(path="/api/v3/openOrders", count=8, status=503)
        wait_for(lambda: run.errors >= 8, what="eight failed ticks")
        ticks = run.ticks
        wait_for(lambda: run.ticks >= ticks + 5, what="ticks after the outage")
    assert hub.flush(30)
    errors = [p["message"] for p in webhook.posts if "repeated exchange errors" in p["title"]]
    assert len(errors) == 1
    assert errors[0].startswith("BTC/USDT@paper: 3 ticks in a row failed on notify-bot; the last: ")


@pytest.fixture
def streaming_symbol():
    config = SimConfig(markets=[MarketSpec("BTC/USDT", price=D("60000"), tick=D("0.01"), step=D("0.00001"))],
                       balances={"USDT": D("100000"), "BTC": D("0")}, seed=3)  # Binance's default limits
    with SimulatorServer(config, streams=True) as server:
        account = ExchangeAccount.objects.create(name="paper", exchange_id="binance", paper=True, base_url=server.base_url)
        yield server, Symbol.objects.create(account=account, symbol="BTC/USDT", price_interval=D("200"),
                                            order_quantity=D("50"), min_order_value=D("5"), buy_window_size=3,
                                            sell_window_size=3, position_safety_check=0, reconcile_interval=3600)


@pytest.mark.slow
def test_streams_down_past_the_threshold_and_back(install_hub, webhook, streaming_symbol):
    sim, symbol = streaming_symbol
    hub = install_hub(webhook.url(), stream_down_seconds=1.0)
    with running(symbol, streams=True, tick_interval=1.0) as bot:
        wait_for(lambda: bot.runs[symbol.pk].engine.feed is not None and bot.runs[symbol.pk].engine.feed.healthy(),
                 what="healthy streams")
        sim.streams.control("stall", {"on": True})
        down = Notification.objects.filter(event="stream_down")
        wait_for(down.exists, timeout=30, what="the streams-down message")
        sim.streams.control("stall", {"on": False})
        wait_for(Notification.objects.filter(event="stream_back").exists, timeout=30, what="the streams-back message")
    assert hub.flush(30)
    texts = [p["message"] for p in webhook.posts if "streams" in p["title"]]
    assert len(texts) == 2
    assert texts[0].startswith("account paper: streams down (no price for 5s; 1 symbol(s)): polling by REST on notify-bot")
    assert texts[1].startswith("account paper: streams deliver again on notify-bot")

"""Delivery through real apprise to receivers on 127.0.0.1: failures are retried, recorded and
never raised; a hanging channel does not hold up a trading loop; duplicates and events every
instance sees go out once; secrets in the URLs stay out of logs, admin and database."""
from __future__ import annotations

import logging
from decimal import Decimal
from io import StringIO

import pytest
from django.core.management import CommandError, call_command

import notifications
from locking.nop import NopLock
from notifications.config import NotifyConfig, parse_channels
from notifications.models import Notification
from notifications.sender import DELIVERY_FAILURES, NOTIFICATIONS, Hub
from tests.procs import wait_for
from trading import services
from trading.models import Symbol
from trading.runner import Bot, BotOptions

pytestmark = pytest.mark.django_db(transaction=True)


def count(metric, *labels) -> float:
    return metric.labels(*labels)._value.get()


def test_a_failing_channel_is_retried_then_recorded_as_failed(install_hub, webhook, paper_symbol):
    webhook.mode = "error"
    failures = count(DELIVERY_FAILURES, "json#1")
    hub = install_hub(webhook.url(), retries=2, backoff=0.01)
    services.symbol_pause(paper_symbol, reason="by a test")  # returns at once, whatever the channel does
    assert hub.flush(30)
    row = Notification.objects.get(event="symbol_paused")
    assert (row.status, row.attempts, webhook.attempts) == ("failed", 3, 3)
    assert "error=500" in row.error and row.channels[0]["outcome"].startswith("failed: ")
    assert count(DELIVERY_FAILURES, "json#1") == failures + 3


def test_a_hanging_channel_does_not_delay_a_tick(install_hub, webhook, paper_symbol):
    webhook.mode = "hang"
    hub = install_hub(webhook.url())
    bot = Bot([Symbol.objects.select_related("account").get(pk=paper_symbol.pk)], NopLock(),
              BotOptions(instance_id="hang-bot", tick_interval=0.05, status_interval=3600, streams=False,
                         reconcile=False), out=lambda line: None)
    bot.start()
    try:
        wait_for(webhook.hanging.is_set, what="the bot_started message held by the channel")
        run = bot.runs[paper_symbol.pk]
        wait_for(lambda: run.ticks > 0, what="a first tick")
        ticks = run.ticks
        services.symbol_pause(paper_symbol, reason="by a test")  # more messages queue behind the held one
        services.symbol_resume(paper_symbol, by="a test")
        wait_for(lambda: run.ticks >= ticks + 20, what="20 more ticks")
        assert webhook.attempts == 1 and not webhook._release.is_set()  # the first delivery still hangs
        assert hub._queue.qsize() >= 2
    finally:
        webhook.mode = "ok"  # the held request ends unanswered; the next ones are taken
        webhook.release()
        bot.stop("test over")
        bot.join()
    assert hub.flush(30)
    assert Notification.objects.get(event="bot_started").status == "failed"  # the held request got no answer
    assert Notification.objects.get(event="symbol_resumed").status == "delivered"


def test_a_full_queue_drops_and_counts_without_blocking(install_hub, webhook):
    webhook.mode = "hang"
    hub = install_hub(webhook.url(), queue_size=2)
    dropped = count(NOTIFICATIONS, "symbols", "dropped")
    assert hub.emit("symbol_paused", "first", subject="a")
    wait_for(webhook.hanging.is_set, what="the first message held")
    taken = [hub.emit("symbol_paused", f"message {i}", subject="a") for i in range(6)]
    assert taken == [True, True, False, False, False, False]
    assert count(NOTIFICATIONS, "symbols", "dropped") == dropped + 4
    webhook.release()


def test_identical_alerts_within_the_window_go_out_once(install_hub, webhook):
    hub = install_hub(webhook.url(), dedup_seconds=600)
    for text in ("streams down for 130s", "streams down for 130s", "streams down for 250s"):
        hub.emit("stream_down", text, subject="account paper")
    assert hub.flush(30)
    assert [p["message"] for p in webhook.posts] == ["streams down for 130s", "streams down for 250s"]


@pytest.mark.parametrize("keyed", [True, False], ids=["keyed", "control-unkeyed"])
def test_an_event_every_instance_sees_goes_out_once(webhook, keyed):
    config = NotifyConfig(channels=parse_channels(webhook.url()), retries=0)
    hubs = [Hub(config, instance_id=name) for name in ("bot-a", "bot-b")]
    for hub in hubs:
        hub.emit("instance_silent", "instance bot-c has sent no heartbeat for 31s", subject="bot-c",
                 key="silent:bot-c:2026-12-07T10:00:00" if keyed else None)
        assert hub.flush(30)
    assert len(webhook.posts) == (1 if keyed else 2)
    assert Notification.objects.filter(event="instance_silent").count() == (1 if keyed else 2)
    for hub in hubs:
        hub.close()


def test_an_account_rate_limit_seen_by_two_instances_goes_out_once(webhook):
    config = NotifyConfig(channels=parse_channels(webhook.url()), retries=0)
    for name in ("bot-a", "bot-b"):
        hub = Hub(config, instance_id=name)
        hub.emit("rate_limited", f"account paper: 429 request weight limit ({name})", subject="account paper",
                 shared=True)
        assert hub.flush(30)
        hub.close()
    assert len(webhook.posts) == 1


def test_round_trips_are_batched_per_symbol(install_hub, webhook):
    hub = install_hub(webhook.url(), trade_interval=3600)
    hub.round_trips("BTC/USDT@paper", count=0, profit=Decimal("-0.05"), quote="USDT")  # a buy's fee: no message
    assert hub.flush(30) and webhook.posts == []
    hub.round_trips("BTC/USDT@paper", count=1, profit=Decimal("0.11"), quote="USDT")
    hub.round_trips("ETH/USDT@paper", count=1, profit=Decimal("0.20"), quote="USDT")
    assert hub.flush(30)
    for _ in range(3):
        hub.round_trips("BTC/USDT@paper", count=1, profit=Decimal("0.06"), quote="USDT")
    assert hub.flush(30)
    assert sorted(p["message"].split(" since ")[0] for p in webhook.posts) == [
        "BTC/USDT@paper: 1 round trip", "ETH/USDT@paper: 1 round trip"]
    assert "realised +0.0600 USDT" in webhook.posts[0]["message"]
    hub.close()  # the interval has not passed: the batch goes out on close
    assert webhook.posts[-1]["message"].startswith("BTC/USDT@paper: 3 round trips since ")
    assert webhook.posts[-1]["message"].endswith("realised +0.1800 USDT after fees")


SECRETS = ("pa55-W0RD-xyz", "hook-S3CRET-path")


def test_secrets_in_the_urls_stay_out_of_logs_admin_and_database(install_hub, webhook, admin_client, caplog, settings,
                                                                 paper_symbol):
    webhook.mode = "error"
    url = f"json://ops:{SECRETS[0]}@127.0.0.1:{webhook.port}/{SECRETS[1]}/x"
    caplog.set_level(logging.DEBUG)
    hub = install_hub(url, retries=1, backoff=0.01)
    services.symbol_pause(paper_symbol, reason="by a test")
    assert hub.flush(30)
    settings.QM_NOTIFY_CONFIG = hub.config
    out = StringIO()
    with pytest.raises(CommandError):
        call_command("notify", "--test", stdout=out)
    rows = list(Notification.objects.values())
    assert len(rows) == 2 and all(r["status"] == "failed" for r in rows)
    pages = admin_client.get("/admin/notifications/notification/").content.decode()
    pages += admin_client.get(f"/admin/notifications/notification/{rows[0]['id']}/change/").content.decode()
    assert "json#1" in pages and "json#1: NOT delivered" in out.getvalue()
    seen = {"database": repr(rows), "logs": caplog.text, "admin": pages, "command": out.getvalue(),
            "settings": repr(settings.QM_NOTIFY_CONFIG)}
    for where, text in seen.items():
        for secret in SECRETS:
            assert secret not in text, f"{secret} in the {where}"


def test_notify_test_says_per_channel_whether_it_was_delivered(webhook, settings):
    broken = type(webhook)(mode="error").start()
    try:
        settings.QM_NOTIFY_CONFIG = NotifyConfig(channels=parse_channels(f"{webhook.url()} {broken.url()}"))
        out = StringIO()
        with pytest.raises(CommandError) as failed:
            call_command("notify", "--test", "--text", "hello from the test", stdout=out)
        assert failed.value.returncode == 1
        assert out.getvalue().splitlines() == ["json#1: delivered",
                                               "json#2: NOT delivered: Failed to send JSON POST notification: "
                                               "Internal server error., error=500."]
        assert [p["message"] for p in webhook.posts] == ["hello from the test"]
        assert broken.attempts == 1  # no retries for a test message
    finally:
        broken.stop()
    settings.QM_NOTIFY_CONFIG = NotifyConfig()
    with pytest.raises(CommandError, match="no channel: set QM_NOTIFY_URLS") as none:
        call_command("notify", "--test")
    assert none.value.returncode == 2


def test_nothing_is_sent_or_recorded_without_a_channel(paper_symbol):
    notifications.uninstall()
    services.symbol_pause(paper_symbol, reason="by a test")
    assert notifications.hub() is None and not Notification.objects.exists()

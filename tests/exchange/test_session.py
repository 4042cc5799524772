"""One exchange session per account and process, over real ccxt and HTTP against the simulator at
Binance's default limits: markets loaded once for every thread, one weight budget and one order
budget, and one gate that a 429, 418 or 403 closes for every thread of the account."""
from __future__ import annotations

import logging
import threading
from decimal import Decimal

import pytest

from tests.exchange.conftest import btc_usdt
from trading.exchange import errors as xerr
from trading.exchange.session import READ_GRACE, Gate, Limits, LocalState, RequestBudget, session_for
from trading.models import ExchangeAccount
from trading.simulator import SimulatorServer

D = Decimal
pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def limited_sim():
    """Binance's own limits: 6,000 weight a minute, 100 orders per 10 s."""
    with SimulatorServer(btc_usdt("100000")) as server:
        yield server


@pytest.fixture
def account(limited_sim):
    return ExchangeAccount.objects.create(name="paper", exchange_id="binance", paper=True, base_url=limited_sim.base_url)


def in_threads(n, work):
    """Run `work(i)` in n threads at once; return the results (or exceptions) in order."""
    results: list = [None] * n
    start = threading.Barrier(n)

    def run(i):
        start.wait()
        try:
            results[i] = work(i)
        except Exception as exc:  # returned, so the test can look at it
            results[i] = exc
    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return results


def test_one_session_per_account_loads_markets_once_for_every_thread(limited_sim, account):
    session = session_for(account)
    assert session_for(ExchangeAccount.objects.get(pk=account.pk)) is session
    prices = in_threads(8, lambda i: session.gateway().fetch_ticker("BTC/USDT").last)
    assert prices == [D("60000")] * 8
    assert limited_sim.request_counts.get("/api/v3/exchangeInfo") == 1
    gateways = in_threads(2, lambda i: session.gateway())
    assert gateways[0] is not gateways[1]  # a ccxt client is never shared between threads
    # The limits come from exchangeInfo.rateLimits.
    assert session.budget.limits == Limits(weight_per_minute=6000, orders_per_10s=100, orders_per_day=200_000)


def test_a_429_holds_back_every_thread_of_the_account_until_retry_after(limited_sim, account, caplog):
    session = session_for(account)
    session.gateway().fetch_ticker("BTC/USDT")
    limited_sim.weights.reset(limit=1)  # the next request goes over
    with pytest.raises(xerr.RateLimited):
        session.gateway().fetch_open_orders("BTC/USDT")
    sent = dict(limited_sim.request_counts)
    results = in_threads(5, lambda i: session.gateway().fetch_ticker("BTC/USDT"))
    assert all(isinstance(r, xerr.RateLimited) and r.retry_after > 0 for r in results), results
    assert limited_sim.request_counts == sent  # none of them reached the exchange
    assert limited_sim.control.state({})["refused429"] == 1
    assert "held" in session.budget.status()


def test_a_418_ban_stops_every_thread_and_says_so_loudly(limited_sim, account, caplog):
    session = session_for(account)
    session.gateway().fetch_ticker("BTC/USDT")
    limited_sim.weights.ban(300)
    caplog.set_level(logging.CRITICAL, logger="quantmesh.exchange")
    with pytest.raises(xerr.RateLimited) as first:
        session.gateway().fetch_ticker("BTC/USDT")
    assert 290 <= first.value.retry_after <= 301
    sent = dict(limited_sim.request_counts)
    results = in_threads(4, lambda i: session.gateway().create_limit_order(
        symbol="BTC/USDT", side="buy", amount=D("0.001"), price=D("50000"), client_order_id=f"qm-1-bm{i + 1}-0",
        post_only=True))
    assert all(isinstance(r, xerr.RateLimited) for r in results)
    assert limited_sim.request_counts == sent and limited_sim.engine.open_orders() == []
    assert [r.levelname for r in caplog.records if "BANNED" in r.getMessage()] == ["CRITICAL"]
    assert session.budget.status().startswith("BANNED")
    assert limited_sim.control.state({})["banned418"] == 1


def test_a_403_from_the_firewall_also_closes_the_gate(limited_sim, account):
    session = session_for(account)
    session.gateway().fetch_ticker("BTC/USDT")
    limited_sim.fail_next(path="/api/v3/ticker/24hr", status=403, msg="Forbidden")
    with pytest.raises(xerr.ExchangeFailure):
        session.gateway().fetch_ticker("BTC/USDT")
    sent = dict(limited_sim.request_counts)
    with pytest.raises(xerr.RateLimited) as held:
        session.gateway().fetch_balances()
    assert held.value.retry_after > 50  # no Retry-After: a minute
    assert limited_sim.request_counts == sent


class Clock:
    def __init__(self, now=1_000_065.0):  # 45 s into a minute: the whole minute's budget is open
        self.now = now

    def __call__(self):
        return self.now


def budget(share=1.0):
    clock = Clock()
    return RequestBudget("acct", LocalState(), share=share, limits=Limits(1000, 20, 1000), clock=clock), clock


def test_reads_stop_at_their_share_and_orders_keep_the_rest():
    subject, _ = budget()
    for _ in range(40):  # 40 x 20 = 800 = 80 % of 1,000
        subject.before("fetch_balance", write=False)
    with pytest.raises(xerr.RateLimited) as refused:
        subject.before("fetch_ticker", write=False)
    assert 0 < refused.value.retry_after <= 60
    for _ in range(150):  # orders may go on to 95 %
        subject.before("create_order", write=True)
    with pytest.raises(xerr.RateLimited):
        subject.before("create_order", write=True)


def test_reads_are_spread_over_the_minute_not_spent_at_its_start():
    subject, clock = budget()
    clock.now = 1_000_020.0  # the first second of a minute: a quarter of the reads may go at once
    for _ in range(10):  # 200 of the 800
        subject.before("fetch_balance", write=False)
    with pytest.raises(xerr.RateLimited) as refused:
        subject.before("fetch_balance", write=False)
    assert 1.0 <= refused.value.retry_after <= 2.0  # a short wait, not the rest of the minute
    clock.now += refused.value.retry_after
    subject.before("fetch_balance", write=False)


def test_the_exchanges_count_corrects_the_budget():
    subject, _ = budget()
    subject.before("fetch_ticker", write=False)
    subject.after(200, {"X-MBX-USED-WEIGHT-1M": "799"}, "{}")  # another process on the IP spent the rest
    with pytest.raises(xerr.RateLimited):
        subject.before("fetch_ticker", write=False)


def test_orders_and_cancels_go_before_checks_when_the_gate_reopens():
    subject, clock = budget()
    subject.after(429, {"Retry-After": "5"}, '{"code":-1003,"msg":"Too much request weight used"}')
    with pytest.raises(xerr.RateLimited):
        subject.before("create_order", write=True)
    clock.now += 5.01
    subject.before("cancel_order", write=True)  # orders and cancels first
    with pytest.raises(xerr.RateLimited):
        subject.before("fetch_open_orders", write=False)
    clock.now += READ_GRACE
    subject.before("fetch_open_orders", write=False)


def test_the_order_budget_paces_new_orders_to_half_the_exchanges_limit():
    subject, clock = budget()
    granted = [subject.take_order() for _ in range(15)]
    assert granted[:10] == [0.0] * 10 and all(wait > 0 for wait in granted[10:])  # 50 % of 20 per 10 s
    clock.now += 10
    assert subject.take_order() == 0.0


def test_a_process_without_redis_takes_its_share():
    subject, _ = budget(share=0.1)
    for _ in range(4):  # 10 % x 80 % of 1,000 = 80
        subject.before("fetch_balance", write=False)
    with pytest.raises(xerr.RateLimited):
        subject.before("fetch_ticker", write=False)
    assert subject.take_order() == 0.0 and subject.take_order() > 0  # 10 % x 50 % of 20 = 1


def test_a_later_gate_is_not_shortened_by_an_earlier_one():
    state = LocalState()
    state.close(Gate(until=200.0, reason="ban", banned=True), 10.0)
    state.close(Gate(until=100.0, reason="429", banned=False), 10.0)
    assert state.gate(150.0).reason == "ban"
    assert state.gate(200.0) is None


@pytest.mark.redis
def test_processes_on_one_redis_share_the_weight_the_orders_and_the_gate(redis_url):
    import uuid

    from trading.exchange.ratestate import RedisState

    namespace = f"qm-test-{uuid.uuid4().hex[:8]}:"
    clock = Clock()
    one, two = (RequestBudget("acct", RedisState(redis_url, namespace, "127.0.0.1:1", "acct"),
                              limits=Limits(1000, 20, 1000), clock=clock) for _ in range(2))
    for _ in range(20):  # 400 weight each: 800 together, the read share of 1,000
        one.before("fetch_balance", write=False)
        two.before("fetch_balance", write=False)
    with pytest.raises(xerr.RateLimited):
        one.before("fetch_ticker", write=False)
    assert [one.take_order() for _ in range(5)] + [two.take_order() for _ in range(5)] == [0.0] * 10
    assert two.take_order() > 0 and one.take_order() > 0
    clock.now += 60
    one.before("fetch_ticker", write=False)
    two.after(418, {"Retry-After": "120"}, '{"code":-1003,"msg":"IP banned"}')
    with pytest.raises(xerr.RateLimited) as held:
        one.before("cancel_order", write=True)
    assert held.value.retry_after > 100 and one.status().startswith("BANNED")


def test_without_redis_the_budget_is_unshared(limited_sim, account, settings):
    settings.QM_LOCK_BACKEND = "nop"
    assert isinstance(session_for(account).budget.state, LocalState)


def test_polling_symbols_tick_as_often_as_the_read_budget_allows():
    bot = RequestBudget("acct", LocalState(), share=0.7)  # Binance spot's limits, the bot's share
    assert bot.tick_interval(1, 1.0) == 1.0
    # 3,024 weight a minute for reads: 5 symbols at 1 s; 50 symbols every 9.9 s.
    assert bot.tick_interval(5, 1.0) == 1.0 and bot.tick_interval(6, 1.0) > 1.0
    assert round(bot.tick_interval(50, 1.0), 2) == 9.92
    shared = RequestBudget("acct", LocalState(), share=1.0)  # Redis: the whole limit, shared
    assert round(shared.tick_interval(50, 1.0), 2) == 6.94

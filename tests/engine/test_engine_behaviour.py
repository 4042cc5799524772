"""How one symbol's engine reacts to the exchange: rejects, missing funds, rate limits, lost
replies, pauses, risk limits and restarts. Real ccxt over HTTP against the simulator."""
from collections import Counter
from datetime import timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

from trading import services
from trading.engine import POST_ONLY_FALLBACK_AFTER
from trading.models import GridSlot, Order, OrderEvent, Symbol

pytestmark = pytest.mark.django_db(transaction=True)
D = Decimal


def statuses(**filters):
    return list(Order.objects.filter(**filters).order_by("id").values_list("client_order_id", "status"))


def test_first_tick_places_the_buy_window_below_the_buffer(sim, make_engine):
    engine = make_engine()
    result = engine.tick()
    # anchor 60000, interval 200, window 3: level 0 is inside the buffer, so -1 and -2 only.
    assert sorted(result.placed) == sorted([f"qm-{engine.symbol.pk}-bm1-0", f"qm-{engine.symbol.pk}-bm2-0"])
    assert sorted(D(o["price"]) for o in sim.engine.ledger()) == [D("59600"), D("59800")]


def test_restart_keeps_the_lattice_and_the_slots(sim, make_engine):
    engine = make_engine()
    engine.tick()
    sim.engine.set_price("BTC/USDT", D("59800"))
    engine.tick()  # the buy at -1 filled and its sell is placed in the same tick
    assert statuses(side="sell") == [(f"qm-{engine.symbol.pk}-sm1-0", "open")]
    sim.engine.set_price("BTC/USDT", D("59730.17"))
    restarted = make_engine()  # a new process: new engine, same database
    assert restarted.lattice == engine.lattice
    restarted.tick()
    slot = GridSlot.objects.get(level=-1)
    assert slot.holding == D("0.00083") - D("0.00000083")
    counts = Counter(o["clientOrderId"] for o in sim.engine.ledger())
    assert max(counts.values()) == 1 and len(counts) == 4  # buys -1, -2, -3 and the sell; nothing re-placed


def test_post_only_rejects_fall_back_to_a_plain_limit(sim, make_engine):
    engine = make_engine()
    want = engine.plan(D("60000"), engine.ledger.live_orders()).orders[0]
    sim.engine.set_price("BTC/USDT", want.price - D("1"))  # the buy would now take
    results = []
    for _ in range(POST_ONLY_FALLBACK_AFTER + 1):
        results.append(engine.place(want, result=engine_result()))
    rejected = Order.objects.filter(level=want.level, status="rejected")
    assert rejected.count() == POST_ONLY_FALLBACK_AFTER
    assert all(o.post_only for o in rejected)
    last = Order.objects.filter(level=want.level).exclude(status="rejected").get()
    assert last.post_only is False and last.client_order_id.endswith(f"-{POST_ONLY_FALLBACK_AFTER}")
    assert [o["type"] for o in sim.engine.ledger()] == ["LIMIT"]


def engine_result():
    from trading.engine import TickResult

    return TickResult()


def test_insufficient_funds_pauses_buys_but_not_sells(sim, make_engine):
    engine = make_engine()
    engine.tick()
    sim.engine.set_price("BTC/USDT", D("59800"))
    sim.engine.set_balance("USDT", D("1"))  # almost nothing left to buy with
    result = engine.tick()
    assert any(cid.startswith(f"qm-{engine.symbol.pk}-b") for cid in result.rejected)
    assert statuses(side="sell") == [(f"qm-{engine.symbol.pk}-sm1-0", "open")]
    before = Order.objects.count()
    engine.tick()
    assert Order.objects.count() == before  # buys stay paused for margin_lock_duration_seconds


def test_rate_limit_backs_off_without_sending(sim, make_engine):
    engine = make_engine()
    sim.fail_next(path="/api/v3/ticker/24hr", status=429, code=-1003, msg="Too much request weight used")
    result = engine.tick()
    assert "rate limited" in result.error and engine.backoff_until > engine.monotonic()
    assert engine.tick().placed == []  # still backing off: no request at all
    assert sim.engine.ledger() == []


def test_lost_reply_is_resolved_by_query_never_resent(sim, make_engine):
    engine = make_engine()
    sim.drop_next(count=1)
    engine.tick()
    ledger = sim.engine.ledger()
    assert len(ledger) == 2 and len({o["clientOrderId"] for o in ledger}) == 2
    dropped = Order.objects.get(client_order_id=ledger[0]["clientOrderId"])
    assert dropped.status == "open" and dropped.exchange_order_id == str(ledger[0]["orderId"])
    trail = list(OrderEvent.objects.filter(order=dropped).order_by("id").values_list("to_status", flat=True))
    assert trail == ["pending", "unknown", "open"]


def test_unknown_order_not_found_is_marked_not_placed_only_after_the_request_window(sim, make_engine):
    engine = make_engine()
    sim.fail_next(path="/api/v3/order", method="POST", status=503, msg="Service Unavailable")  # refused, not executed
    engine.tick()
    unknown = Order.objects.get(status="unknown")
    engine.tick()
    assert Order.objects.get(pk=unknown.pk).status == "unknown"  # still inside the window: keep asking
    Order.objects.filter(pk=unknown.pk).update(sent_at=timezone.now() - timedelta(seconds=30))
    engine.tick()
    assert Order.objects.get(pk=unknown.pk).status == "not_placed"
    assert unknown.client_order_id not in {o["clientOrderId"] for o in sim.engine.ledger()}


def test_paused_symbol_places_nothing_and_resumes(sim, make_engine):
    engine = make_engine()
    services.symbol_pause(engine.symbol, reason="test")
    assert engine.tick().paused and sim.engine.ledger() == []
    services.symbol_resume(Symbol.objects.get(pk=engine.symbol.pk))
    assert len(engine.tick().placed) == 2


def test_timed_pause_resumes_by_itself(sim, make_engine):
    engine = make_engine()
    services.symbol_pause(engine.symbol, reason="margin", until=timezone.now() - timedelta(seconds=1))
    assert len(engine.tick().placed) == 2
    assert Symbol.objects.get(pk=engine.symbol.pk).status == "running"


def test_max_grid_layers_caps_inventory(sim, make_engine, paper_symbol):
    Symbol.objects.filter(pk=paper_symbol.pk).update(max_grid_layers=1)
    engine = make_engine()
    result = engine.tick()
    assert len(result.placed) == 1


def test_stop_loss_pauses_the_symbol(sim, make_engine, paper_symbol):
    Symbol.objects.filter(pk=paper_symbol.pk).update(stop_loss_ratio=D("0.01"))
    engine = make_engine()
    engine.tick()
    sim.engine.set_price("BTC/USDT", D("59800"))
    engine.tick()
    sim.engine.set_price("BTC/USDT", D("58000"))  # 3 % below the buy at 59800
    assert engine.tick().paused
    symbol = Symbol.objects.get(pk=paper_symbol.pk)
    assert symbol.status == "paused" and "stop loss" in symbol.pause_reason


def test_position_safety_check_pauses_at_start(sim, make_engine, paper_symbol):
    Symbol.objects.filter(pk=paper_symbol.pk).update(position_safety_check=100000)  # needs 5,000,000 USDT
    make_engine()
    symbol = Symbol.objects.get(pk=paper_symbol.pk)
    assert symbol.status == "paused" and "position safety check" in symbol.pause_reason


def test_a_symbol_the_exchange_does_not_list_is_refused(sim, paper_symbol, make_engine):
    from trading.exchange import Rejected

    other = Symbol.objects.create(account=paper_symbol.account, symbol="DOGE/USDT", price_interval=D("0.001"),
                                  order_quantity=D("10"), position_safety_check=0)
    with pytest.raises(Rejected, match="does not list DOGE/USDT"):
        make_engine(symbol=other)
    assert Order.objects.count() == 0


def test_a_quantity_below_the_exchange_minimum_notional_is_refused(sim, make_engine, paper_symbol):
    from trading.exchange import Rejected

    Symbol.objects.filter(pk=paper_symbol.pk).update(order_quantity=D("4"))  # the simulator's minimum is 5
    with pytest.raises(Rejected, match="below the exchange's minimum notional 5"):
        make_engine()
    assert Order.objects.count() == 0


@pytest.fixture
def requests_made():
    """Names of the gateway methods called, in order, through the real request observer."""
    from trading.exchange.gateway import set_request_observer

    calls: list[str] = []
    set_request_observer(lambda exchange, method, seconds, error: calls.append(method))
    yield calls
    set_request_observer(None)


def test_an_idle_tick_skips_the_trades_request_and_a_fill_is_still_applied_at_once(sim, make_engine, requests_made):
    engine = make_engine()
    engine.tick()  # places the buys; the first tick always syncs trades
    requests_made.clear()
    for _ in range(3):
        assert engine.tick().fills == 0
    assert Counter(requests_made) == {"fetch_open_orders": 3, "fetch_ticker": 3}

    sim.engine.set_price("BTC/USDT", D("59800"))  # the buy at level -1 fills
    requests_made.clear()
    result = engine.tick()
    assert "fetch_my_trades" in requests_made
    assert result.fills == 1
    assert statuses(side="sell") == [(f"qm-{engine.symbol.pk}-sm1-0", "open")]  # its sell, in the same tick


def test_a_full_trade_sync_still_runs_on_idle_ticks_now_and_then(sim, make_engine, requests_made):
    clock = [1000.0]
    engine = make_engine()
    engine.monotonic = lambda: clock[0]
    engine.tick()
    requests_made.clear()
    engine.tick()
    assert "fetch_my_trades" not in requests_made
    from trading.engine import FULL_TRADE_SYNC_SECONDS

    clock[0] += FULL_TRADE_SYNC_SECONDS
    engine.tick()
    assert requests_made.count("fetch_my_trades") == 1

"""A backtest runs the live code path: over the recorded candles it places the very orders, and
books the very PnL, of a `runbot` paper run ticking at every point of every candle through the
HTTP simulator; the in-process transport and ccxt over HTTP agree; and skipping quiet ticks
changes nothing (with the skip made careless, the comparison fails)."""
from __future__ import annotations

from decimal import Decimal as D

import pytest

from backtesting.driver import Spec, run
from tests.procs import manage
from trading.engine import SymbolEngine
from trading.models import ExchangeAccount, GridSlot, Order, Symbol

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

GRID = {"price_interval": D("261.45"), "order_quantity": D("50"), "min_order_value": D("10"), "buy_window_size": 5,
        "sell_window_size": 5, "order_cleanup_threshold": 30, "cleanup_batch_size": 5}


def orders_of(symbol: Symbol) -> list[tuple]:
    return list(Order.objects.filter(symbol=symbol).order_by("id").values_list(
        "side", "level", "seq", "price", "amount", "status", "filled_amount", "post_only"))


def books_of(symbol: Symbol) -> tuple:
    slots = GridSlot.objects.filter(symbol=symbol)
    return (sum((s.realized_pnl for s in slots), D(0)), sum(s.round_trips for s in slots),
            sorted((s.level, s.holding, s.cost) for s in slots))


def backtest(klines_csv, **overrides) -> tuple[Symbol, dict]:
    spec = Spec(klines=str(klines_csv), params=dict(GRID), **overrides)
    results = run(spec)
    return Symbol.objects.get(account__name=f"backtest-{spec.transport}"), results


def test_a_backtest_and_a_runbot_replay_place_the_same_orders_and_book_the_same_pnl(klines_csv, tmp_path):
    account = ExchangeAccount.objects.create(name="replay", exchange_id="binance", paper=True)
    replayed = Symbol.objects.create(account=account, symbol="BTC/USDT", position_safety_check=0, **GRID)
    log = tmp_path / "runbot.log"
    bot = manage("runbot", "--replay", str(klines_csv), "--account", "replay", "--status-interval", "5",
                 log_path=log, QM_PAPER_EXCHANGE_URL="")
    assert bot.wait(timeout=600) == 0, log.read_text()[-3000:]
    text = log.read_text()
    assert "the replay has ended after 3997 ticks" in text  # 999 candles walked, 4 points each, + the first

    symbol, results = backtest(klines_csv)
    live = orders_of(replayed)
    assert len(live) > 40 and any(o[0] == "sell" and o[5] == "filled" for o in live)
    assert orders_of(symbol) == live
    assert books_of(symbol) == books_of(replayed)  # exact: the ledger's 18 places
    assert results["run"]["ticks"] < len(live) * 3 < 3997  # the backtest ticked only where something happened


def test_the_in_process_transport_and_ccxt_over_http_give_the_same_orders(klines_csv):
    end = None  # every candle: a few seconds in process, about a minute over HTTP
    local, local_results = backtest(klines_csv, end_ms=end)
    http, http_results = backtest(klines_csv, end_ms=end, transport="http")
    assert len(orders_of(local)) > 40
    assert orders_of(http) == orders_of(local)
    assert books_of(http) == books_of(local)
    for key in ("pnl", "fees", "realized_pnl", "unrealized_pnl", "max_drawdown", "time_in_market", "peak_capital"):
        assert http_results[key] == local_results[key], key


def set_aside(symbol: Symbol, name: str) -> None:
    """Rename a run's account, so the next run can create its own."""
    ExchangeAccount.objects.filter(pk=symbol.account_id).update(name=name)


def test_skipping_ticks_is_checked_by_ticking_at_every_point(klines_csv, monkeypatch):
    """The check behind the first test: ticking at every point gives the backtest's orders, and a
    skip that ignores what the grid would do (would_act always False) gives other orders."""
    quiet, _ = backtest(klines_csv)
    set_aside(quiet, "quiet")
    every = run(Spec(klines=str(klines_csv), params=dict(GRID)), every_point=True)
    assert every["run"]["ticks"] == 3997
    ticked = Symbol.objects.get(account__name="backtest-local")
    assert orders_of(ticked) == orders_of(quiet)
    set_aside(ticked, "every point")

    monkeypatch.setattr(SymbolEngine, "would_act", lambda self, price: False)
    careless, _ = backtest(klines_csv)
    assert orders_of(careless) != orders_of(quiet)

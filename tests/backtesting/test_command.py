"""`manage.py backtest` as a user runs it: a run stored and reported, a sweep ranked, and the
inputs it refuses (with what was wrong, and nothing stored)."""
from __future__ import annotations

import json
from decimal import Decimal as D
from io import StringIO
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command

from backtesting.models import BacktestRun

pytestmark = [pytest.mark.django_db(transaction=True)]


def backtest(*args: str) -> tuple[str, str]:
    out, err = StringIO(), StringIO()
    call_command("backtest", *args, stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


def refused(*args: str) -> str:
    with pytest.raises(CommandError) as error:
        backtest(*args)
    assert BacktestRun.objects.count() == 0
    return str(error.value)


@pytest.mark.slow
def test_a_run_is_stored_with_its_results_and_a_self_contained_report(klines_csv, tmp_path, admin_client):
    report = tmp_path / "report.html"
    out, err = backtest("--klines", str(klines_csv), "--price-interval", "0.3%", "--balance", "USDT=5000",
                        "--json", "--report", str(report))
    data = json.loads(out)
    results = data["results"]
    run = BacktestRun.objects.get()
    assert run.pk == data["id"] and run.status == "finished" and run.candles == 999
    assert run.parameters["price_interval"] == "0.3%" and run.parameters["balance USDT"] == "5000"
    assert run.parameters["price_interval (as run)"] == "261.46"  # 0.3 % of the first close, 87,151.70
    assert run.total_return == D(results["total_return"])
    assert results["start_equity"] == "5000.00000000"
    # The account's change is what the ledger booked, to the unit: realised plus unrealised.
    assert D(results["pnl"]) == D(results["realized_pnl"]) + D(results["unrealized_pnl"])
    assert results["round_trips"] > 10 and D(results["fees"]) > 0 and D(results["max_drawdown"]) > 0
    assert "100.0%" in err or "999/999" in err  # progress was shown
    html = report.read_text()
    assert html.count("<svg") == 2 and "<script" not in html and "src=" not in html
    assert "https://" not in html and "http://" not in html.replace('xmlns="http://www.w3.org/2000/svg"', "")
    assert "Total return" in html and "Buy and hold" in html
    page = admin_client.get(f"/admin/backtesting/backtestrun/{run.pk}/report/")
    assert page.status_code == 200 and b"<svg" in page.content
    listing = admin_client.get("/admin/backtesting/backtestrun/")
    assert listing.status_code == 200 and b"report" in listing.content


@pytest.mark.slow
def test_a_sweep_runs_every_set_in_parallel_and_ranks_them(klines_csv):
    out, err = backtest("--klines", str(klines_csv), "--sweep", "price_interval=0.3%,0.5%", "buy_window_size=3,5",
                        "--workers", "2")
    runs = list(BacktestRun.objects.order_by("rank"))
    assert [r.rank for r in runs] == [1, 2, 3, 4] and len({r.sweep for r in runs}) == 1
    returns = [r.total_return for r in runs]
    assert returns == sorted(returns, reverse=True)
    assert {(r.parameters["price_interval"], r.parameters["buy_window_size"]) for r in runs} == {
        ("0.3%", "3"), ("0.3%", "5"), ("0.5%", "3"), ("0.5%", "5")}
    lines = out.strip().splitlines()
    assert lines[0].split()[:3] == ["rank", "price_interval", "buy_window_size"]
    assert len(lines) == 5 and err.count("] set ") == 4


def test_a_grid_whose_step_does_not_cover_the_fees_is_refused_with_the_numbers(klines_csv):
    message = refused("--klines", str(klines_csv), "--price-interval", "50")
    assert ("this grid loses on every round trip: price_interval 50 is 0.06 % of the price 89296.20, and a round "
            "trip pays the fee 0.10 % twice; each round trip returns -0.14 % of its cost. Widen price_interval "
            "(above 178.87). 89296.20 is the highest price in range") in message
    assert "--allow-unprofitable" in message

@pytest.mark.slow
def test_the_override_runs_an_unprofitable_grid(klines_csv):
    out, _ = backtest("--klines", str(klines_csv), "--price-interval", "50", "--allow-unprofitable", "--json")
    results = json.loads(out)["results"]
    assert D(results["realized_pnl"]) < 0 and results["round_trips"] > 100


def csv_file(tmp_path: Path, *rows: str) -> str:
    path = tmp_path / "bad.csv"
    path.write_text("open_time_ms,open,high,low,close,volume\n" + "\n".join(rows) + "\n")
    return str(path)


GOOD = ["1699999980000,100,101,99,100,1", "1700000040000,100,101,99,100,1", "1700000100000,100,101,99,100,1"]


@pytest.mark.parametrize(("rows", "expected"), [
    ([GOOD[0], GOOD[1], "1700000160000,100,101,99,100,1"],
     "bad.csv:4: a gap: 2023-11-14 22:16 follows 2023-11-14 22:14, 1 candle(s) of 60s are missing"),
    ([GOOD[1], GOOD[0]], "bad.csv:3: open_time_ms 1699999980000 is before the row before"),
    ([GOOD[0], GOOD[0]], "bad.csv:3: open_time_ms 1699999980000 repeats the row before"),
    ([GOOD[0], "1700000040000,100,abc,99,100,1"], "bad.csv:3: not a valid kline row"),
    ([GOOD[0], "1700000040000,100,98,99,100,1"], "bad.csv:3: inconsistent kline"),
    ([GOOD[0]], "at least two candles"),
], ids=["gap", "unsorted", "duplicate", "bad-number", "inconsistent", "one-row"])
def test_a_bad_candle_file_is_refused_naming_the_line(tmp_path, rows, expected):
    assert expected in refused("--klines", csv_file(tmp_path, *rows), "--price-interval", "5")


@pytest.mark.parametrize(("args", "expected"), [
    (["--order-quantity", "3"], "order_quantity 3 buys 0.00003 BTC at"),
    (["--from", "2020-01-01"], "the range asked for runs outside the file"),
    (["--from", "2025-13-01"], "--from: '2025-13-01' is not a date"),
    (["--fees", "0.001"], "--fees: give maker,taker"),
    (["--balance", "USDT"], "--balance: give ASSET=AMOUNT"),
    (["--sweep", "colour=1,2"], "--sweep: 'colour=1,2' is not NAME=V1,V2"),
    (["--buy-window-size", "two"], "buy_window_size: 'two' is not a whole number"),
    (["--price-interval", "0.001"], "price_interval 0.001 is below the tick size 0.01"),
], ids=["below-min-notional", "range", "date", "fees", "balance", "sweep", "integer", "tick"])
def test_bad_parameters_are_refused_before_anything_runs(klines_csv, args, expected):
    assert expected in refused("--klines", str(klines_csv), *args)


def test_a_missing_file_is_named(tmp_path):
    assert "nowhere.csv: cannot read" in refused("--klines", str(tmp_path / "nowhere.csv"))

"""`manage.py fetchklines` through real ccxt against the simulator's klines endpoint, at Binance's
limits: the recorded candles come back exactly, in pages; an interrupted download resumes where
the file ends (an incomplete last line dropped); bad input is refused and writes nothing."""
from __future__ import annotations

import csv
from decimal import Decimal as D
from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from tests.paper import klines_csv  # noqa: F401  (fixture)
from trading import history
from trading.simulator import MarketSpec, SimConfig, SimulatorServer


def rows(path):
    with open(path, newline="") as handle:
        return [(int(r["open_time_ms"]), *(D(r[k]) for k in ("open", "high", "low", "close", "volume")))
                for r in csv.DictReader(handle)]


@pytest.fixture
def replayed(klines_csv):  # noqa: F811
    """A simulator that has replayed the whole recorded file: its klines are the file's rows."""
    market = MarketSpec("BTC/USDT", klines_csv=klines_csv, tick=D("0.1"), step=D("0.001"))
    with SimulatorServer(SimConfig(markets=[market], balances={"USDT": D("1000")})) as sim:
        sim.engine.step(len(rows(klines_csv)))  # to the end of the file (the path stops there)
        yield sim, rows(klines_csv)


def fetch(sim, path, *extra):
    out, err = StringIO(), StringIO()
    call_command("fetchklines", str(path), "--symbol", "BTC/USDT", "--base-url", sim.base_url, *extra,
                 stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


def iso(ms):
    from datetime import UTC, datetime

    return datetime.fromtimestamp(ms / 1000, tz=UTC).isoformat()


def test_the_recorded_candles_come_back_exactly_in_pages(replayed, tmp_path):
    sim, recorded = replayed
    path = tmp_path / "btc.csv"
    out, err = fetch(sim, path, "--since", iso(recorded[0][0]), "--until", iso(recorded[-1][0]))
    assert rows(path) == recorded
    assert f"{len(recorded)} candles written" in out and "in 1 request" in out  # up to 1000 per page
    assert "100.0%" in err
    assert sim.control.state({})["refused429"] == 0


def test_an_interrupted_download_resumes_where_the_file_ends(replayed, tmp_path):
    sim, recorded = replayed
    path = tmp_path / "btc.csv"
    fetch(sim, path, "--since", iso(recorded[0][0]), "--until", iso(recorded[399][0]))
    with path.open("a") as handle:
        handle.write("1767079620000,871")  # a write cut short
    out, _ = fetch(sim, path, "--since", iso(recorded[0][0]), "--until", iso(recorded[-1][0]))
    assert rows(path) == recorded
    assert "resumed after" in out and f"{len(recorded) - 400} candles written" in out


def test_pages_follow_each_other_without_a_gap_or_a_repeat(replayed, tmp_path):
    from trading.exchange.gateway import ExchangeGateway, build_exchange

    sim, recorded = replayed
    path = tmp_path / "btc.csv"
    gateway = ExchangeGateway(build_exchange("binance", base_url=sim.base_url))
    seen = []
    result = history.download(gateway, "BTC/USDT", "1m", recorded[0][0], recorded[-1][0], path, page=300,
                              progress=lambda d, at: seen.append(at))
    assert rows(path) == recorded and result.requests == 4 and result.gaps == 0
    assert seen == sorted(seen) and seen[-1] == recorded[-1][0] + 60_000


@pytest.mark.parametrize(("args", "message"), [
    (["--since", "yesterday"], "--since 'yesterday' is not a date"),
    (["--since", "2026-01-02", "--until", "2026-01-01"], "before --since"),
    (["--since", "2026-01-01", "--timeframe", "7m"], "--timeframe '7m'"),
    (["--since", "2026-01-01", "--symbol", "NOPE/USDT"], "does not list NOPE/USDT"),
])
def test_bad_input_is_refused_and_writes_nothing(replayed, tmp_path, args, message):
    sim, _ = replayed
    path = tmp_path / "btc.csv"
    with pytest.raises(CommandError, match=message.replace("(", r"\(")):
        fetch(sim, path, *args)
    assert not path.exists()


def test_a_file_that_is_not_a_klines_file_is_left_alone(replayed, tmp_path):
    sim, recorded = replayed
    path = tmp_path / "notes.csv"
    path.write_text("name,value\na,1\n")
    with pytest.raises(CommandError, match="is not a klines file"):
        fetch(sim, path, "--since", iso(recorded[0][0]))
    assert path.read_text() == "name,value\na,1\n"
    assert history.timeframe_ms("15m") == 900_000


def test_a_foreign_file_with_no_final_newline_is_refused_untouched(tmp_path):
    path = tmp_path / "notes.csv"
    path.write_bytes(b"name,value\na,1")
    with pytest.raises(history.HistoryError, match="is not a klines file"):
        history.resume_point(path, 0, 60_000)
    assert path.read_bytes() == b"name,value\na,1"


@pytest.mark.parametrize("cut", ["", "1767079620000,871", "1767079620000," + "9" * 9000])
def test_the_resume_point_is_read_from_the_ends_of_the_file(tmp_path, cut):
    """Rows past the first block read back from the end, an incomplete last line (even one longer
    than that block) dropped, the file cut to its complete rows."""
    path = tmp_path / "btc.csv"
    body = "".join(f"{1767000000000 + i * 60_000},1.0,1.0,1.0,1.0,1.0\n" for i in range(400))
    path.write_text(history.HEADER + "\n" + body + cut)
    assert history.resume_point(path, 1767000000000, 60_000) == 1767000000000 + 399 * 60_000
    assert path.read_text() == history.HEADER + "\n" + body


@pytest.mark.parametrize("content", [history.HEADER + "\n", history.HEADER + "\n1767000000000,1.0", history.HEADER])
def test_a_file_with_no_complete_row_resumes_from_the_start(tmp_path, content):
    path = tmp_path / "btc.csv"
    path.write_text(content)
    assert history.resume_point(path, 1767000000000, 60_000) is None
    assert path.read_text() in (history.HEADER + "\n", "")

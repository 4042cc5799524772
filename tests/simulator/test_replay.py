"""Replaying recorded klines as the price path, and serving them through ccxt."""
from __future__ import annotations

import csv
from decimal import Decimal
from pathlib import Path

import pytest

from tests.simulator.conftest import make_config
from trading.exchange.local import ccxt_client
from trading.simulator import Candle, MarketSpec, load_klines_csv
from trading.simulator.binance_api import aggregate

D = Decimal


def csv_rows(path: Path) -> list[dict]:
    with path.open(newline="") as handle:
        return list(csv.DictReader(handle))


@pytest.fixture
def replay_sim(make_sim, klines_csv):
    market = MarketSpec("BTC/USDT", klines_csv=klines_csv, tick=D("0.01"), step=D("0.00001"),
                        min_notional=D("5"))
    return make_sim(make_config(markets=[market]))


def test_replay_starts_on_the_first_close_and_steps_row_by_row(replay_sim, klines_csv):
    rows = csv_rows(klines_csv)
    engine = replay_sim.engine
    assert engine.price("BTCUSDT") == D(rows[0]["close"]).quantize(D("0.01"))
    engine.step(2)
    assert engine.price("BTCUSDT") == D(rows[2]["close"]).quantize(D("0.01"))
    assert [c.open_time for c in engine.candles("BTCUSDT")] == [
        int(row["open_time_ms"]) for row in rows[:3]]


def test_replay_fills_on_the_recorded_high(replay_sim, klines_csv):
    rows = csv_rows(klines_csv)
    start = D(rows[0]["close"])
    # the first later row whose high reaches above the start, and a sell at that high
    index = next(i for i, row in enumerate(rows[1:], 1) if D(row["high"]) > start)
    target = D(rows[index]["high"]).quantize(D("0.01"))
    client = ccxt_client(replay_sim)
    placed = client.create_order("BTC/USDT", "limit", "sell", 0.01, float(target),
                                 {"newClientOrderId": "qm-replay"})
    assert placed["status"] == "open"
    for _ in range(index - 1):
        replay_sim.engine.step()
    assert client.fetch_order(placed["id"], "BTC/USDT")["status"] == "open"
    fills = replay_sim.engine.step()
    assert [(t.price, t.qty) for t in fills] == [(target, D("0.01"))]


def test_fetch_ohlcv_serves_the_replayed_rows(replay_sim, klines_csv):
    rows = csv_rows(klines_csv)
    replay_sim.engine.step(9)
    client = ccxt_client(replay_sim)
    candles = client.fetch_ohlcv("BTC/USDT", "1m", limit=5)
    expected = rows[5:10]
    assert [c[0] for c in candles] == [int(r["open_time_ms"]) for r in expected]
    assert [c[2] for c in candles] == [float(D(r["high"]).quantize(D("0.01"))) for r in expected]
    assert [c[5] for c in candles] == [float(r["volume"]) for r in expected]
    five = client.fetch_ohlcv("BTC/USDT", "5m")
    assert sum(c[5] for c in five) == pytest.approx(sum(float(r["volume"]) for r in rows[:10]))


def test_replay_stops_at_the_end(make_sim, tmp_path):
    path = tmp_path / "two.csv"
    path.write_text("open_time_ms,open,high,low,close,volume\n"
                    "60000,100.00,101.00,99.00,100.50,1\n"
                    "120000,100.50,102.00,100.00,101.25,2\n")
    sim = make_sim(make_config(markets=[MarketSpec("ABC/USDT", klines_csv=path, tick=D("0.01"),
                                                    step=D("0.01"))]))
    sim.engine.step(5)
    assert sim.engine.price("ABCUSDT") == D("101.25")
    assert len(sim.engine.candles("ABCUSDT")) == 2


def test_bad_csv_is_reported_with_its_line(tmp_path):
    path = tmp_path / "bad.csv"
    path.write_text("open_time_ms,open,high,low,close,volume\n60000,1,2,0.5,1.5,3\n"
                    "120000,1,x,1,1,1\n")
    with pytest.raises(ValueError, match="bad.csv:3"):
        load_klines_csv(path, D("0.01"))
    with pytest.raises(ValueError, match="missing columns"):
        (tmp_path / "cols.csv").write_text("time,price\n1,2\n")
        load_klines_csv(tmp_path / "cols.csv", D("0.01"))


def test_aggregate_merges_candles_into_aligned_buckets():
    one = [Candle(60_000 * i, D(10 + i), D(20 + i), D(5 + i), D(11 + i), D(1)) for i in range(4, 11)]
    merged = aggregate(one, 300_000)
    assert [c.open_time for c in merged] == [0, 300_000, 600_000]
    assert merged[1] == Candle(300_000, D(15), D(29), D(10), D(20), D(5))

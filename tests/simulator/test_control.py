"""The `/sim/` control API over HTTP."""
from __future__ import annotations

from decimal import Decimal

D = Decimal


def place(exchange, price, client_id, side="buy", amount=0.01):
    return exchange.create_order("BTC/USDT", "limit", side, amount, price,
                                 {"newClientOrderId": client_id})


def test_ledger_lists_every_accepted_order(exchange, http):
    place(exchange, 59000, "qm-a")
    canceled = place(exchange, 58000, "qm-b")
    exchange.cancel_order(canceled["id"], "BTC/USDT")
    status, _, ledger = http.control("GET", "/sim/ledger")
    assert status == 200
    assert [(r["clientOrderId"], r["orderId"], r["status"]) for r in ledger] == [
        ("qm-a", 1, "NEW"), ("qm-b", 2, "CANCELED")]
    row = ledger[0]
    assert {key: row[key] for key in ("symbol", "side", "type", "price", "origQty",
                                      "executedQty")} == {
        "symbol": "BTCUSDT", "side": "BUY", "type": "LIMIT", "price": "59000",
        "origQty": "0.01", "executedQty": "0"}
    assert isinstance(row["time"], int)
    assert http.control("GET", "/sim/ledger?symbol=ETHUSDT")[2] == []


def test_price_moves_and_fills(exchange, http):
    place(exchange, 59000, "qm-p")
    status, _, body = http.control("POST", "/sim/price", {"symbol": "BTCUSDT", "price": "58500"})
    assert status == 200
    assert body["price"] == "58500.00"
    assert [(t["orderId"], t["qty"], t["isMaker"]) for t in body["trades"]] == [
        (1, "0.01000000", True)]
    assert exchange.fetch_ticker("BTC/USDT")["last"] == 58500
    _, _, balances = http.control("GET", "/sim/balances")
    assert balances["BTC"] == {"free": "1.00999000", "locked": "0.00000000"}
    assert balances["USDT"] == {"free": "99410.00000000", "locked": "0.00000000"}


def test_price_accepts_ccxt_symbols_and_refuses_floats(http):
    assert http.control("POST", "/sim/price", {"symbol": "ETH/USDT", "price": "3100"})[0] == 200
    status, _, body = http.control("POST", "/sim/price", {"symbol": "ETHUSDT", "price": 3100.5})
    assert status == 400 and "not float" in body["error"]
    status, _, body = http.control("POST", "/sim/price", {"symbol": "XRPUSDT", "price": "1"})
    assert (status, body) == (400, {"code": -1121, "msg": "Invalid symbol."})


def test_step(sim, http):
    status, _, body = http.control("POST", "/sim/step", {"n": 3, "symbol": "BTCUSDT"})
    assert status == 200
    assert len(sim.engine.candles("BTCUSDT")) == 4
    assert len(sim.engine.candles("ETHUSDT")) == 1
    assert body["prices"]["BTCUSDT"] == str(sim.engine.price("BTCUSDT"))


def test_fill_out_of_band(exchange, http):
    placed = place(exchange, 59000, "qm-f", amount=0.004)
    status, _, body = http.control("POST", "/sim/fill", {"symbol": "BTCUSDT",
                                                         "clientOrderId": "qm-f", "qty": "0.001"})
    assert status == 200
    assert body["order"]["status"] == "PARTIALLY_FILLED"
    assert body["order"]["executedQty"] == "0.00100000"
    http.control("POST", "/sim/fill", {"symbol": "BTCUSDT", "orderId": int(placed["id"])})
    order = exchange.fetch_order(placed["id"], "BTC/USDT")
    assert (order["status"], order["filled"]) == ("closed", 0.004)
    assert len(exchange.fetch_my_trades("BTC/USDT")) == 2


def test_cancel_out_of_band(sim, exchange, http):
    placed = place(exchange, 59000, "qm-x")
    status, _, body = http.control("POST", "/sim/cancel", {"symbol": "BTC/USDT",
                                                           "orderId": placed["id"]})
    assert (status, body["status"]) == (200, "CANCELED")
    assert exchange.fetch_order(placed["id"], "BTC/USDT")["status"] == "canceled"
    assert sim.engine.balance("USDT").locked == 0
    status, _, body = http.control("POST", "/sim/cancel", {"symbol": "BTCUSDT",
                                                           "orderId": placed["id"]})
    assert (status, body["code"]) == (400, -2011)


def test_expire_out_of_band(exchange, http):
    placed = place(exchange, 59000, "qm-e")
    status, _, body = http.control("POST", "/sim/cancel", {
        "symbol": "BTCUSDT", "clientOrderId": "qm-e", "status": "EXPIRED"})
    assert (status, body["status"]) == (200, "EXPIRED")
    assert exchange.fetch_order(placed["id"], "BTC/USDT")["status"] == "expired"
    assert exchange.fetch_balance()["USDT"]["free"] == 100000


def test_foreign_order_shows_in_open_orders(exchange, http):
    status, _, body = http.control("POST", "/sim/foreign-order", {
        "symbol": "BTCUSDT", "side": "sell", "price": "65000", "quantity": "0.1",
        "clientOrderId": "web_manual_1"})
    assert status == 200
    assert body["order"]["clientOrderId"] == "web_manual_1"
    (order,) = exchange.fetch_open_orders("BTC/USDT")
    assert (order["clientOrderId"], order["side"], order["amount"]) == ("web_manual_1", "sell", 0.1)
    assert http.control("GET", "/sim/ledger")[2][0]["foreign"] is True
    assert exchange.fetch_balance()["BTC"]["used"] == 0.1


def test_set_balances_and_reset(sim, http):
    _, _, body = http.control("POST", "/sim/balances", {"ETH": "2.5"})
    assert body["ETH"] == {"free": "2.50000000", "locked": "0.00000000"}
    http.control("POST", "/sim/price", {"symbol": "BTCUSDT", "price": "1000"})
    assert http.control("POST", "/sim/reset")[0] == 200
    assert sim.engine.balance("ETH").free == 0
    assert sim.engine.price("BTCUSDT") == D("60000")


def test_state(http):
    _, _, body = http.control("GET", "/sim/state")
    assert body["prices"] == {"BTCUSDT": "60000.00", "ETHUSDT": "3000.00"}
    assert (body["orders"], body["trades"], body["weightLimit"]) == (0, 0, 6000)


def test_bad_control_requests(http):
    assert http.request("POST", "/sim/price", body=b"{not json")[0] == 400
    status, _, body = http.control("POST", "/sim/price", {"symbol": "BTCUSDT"})
    assert (status, body) == (400, {"error": "missing field 'price'"})
    assert http.control("POST", "/sim/nothing", {})[0] == 404
    status, _, body = http.control("POST", "/sim/fail", {"count": 0})
    assert status == 400 and "count" in body["error"]
    status, _, body = http.control("POST", "/sim/drop", {"mode": "maybe"})
    assert status == 400 and "mode" in body["error"]
    assert http.control("POST", "/sim/latency", {"ms": 10**9})[0] == 400


def test_unknown_api_path(http):
    status, _, body = http.request("GET", "/api/v3/nothing")
    assert status == 404 and body["code"] == -1000

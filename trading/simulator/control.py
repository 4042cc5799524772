"""The `/sim/...` control API: unsigned JSON endpoints for tests, demos and checkers.

Every handler takes the decoded JSON body (or the query parameters for GET) and returns
`(status, payload)`. Bad input answers 400 `{"error": "..."}`; an engine refusal answers 400
with Binance's `{"code", "msg"}`. Symbols may be given as "BTCUSDT" or "BTC/USDT"; amounts and
prices as strings (JSON floats are refused).

    GET  /sim/ledger[?symbol=BTCUSDT]  every order ever accepted: clientOrderId, orderId, symbol,
                                       side, type, price, origQty, executedQty,
                                       cummulativeQuoteQty, status, time, updateTime, foreign
    GET  /sim/balances                 {"USDT": {"free": "...", "locked": "..."}, ...}
    POST /sim/balances                 {"USDT": "1000"}: set free amounts
    GET  /sim/trades[?symbol=...]      every fill, in the myTrades shape
    GET  /sim/state                    prices, order/trade counts, weight used and limit,
                                       429s and 418s answered, ban, ORDERS counts
    POST /sim/price                    {"symbol", "price"}: move the price, fill what it reaches
    POST /sim/step                     {"n": 1, "symbol": optional}: advance the price path
    POST /sim/fill                     {"symbol", "orderId" | "clientOrderId", "qty": optional}
    POST /sim/cancel                   {"symbol", "orderId" | "clientOrderId",
                                        "status": "CANCELED" (default) | "EXPIRED"}
    POST /sim/foreign-order            {"symbol", "side", "price", "quantity",
                                        "clientOrderId": optional, "type": "LIMIT"}
    POST /sim/latency                  {"ms", "path": optional, "method": optional}; 0 removes
    POST /sim/fail                     {"path", "method", "count": 1, "status": 503, "code",
                                        "msg", "hang_ms": 0, "execute": false}
    POST /sim/drop                     {"count": 1, "path": "/api/v3/order", "method": "POST",
                                        "mode": "close" | "504"}
    POST /sim/faults/clear             remove every latency, fail and drop rule
    POST /sim/weight                   {"limit": optional}: empty the weight budget (new limit)
    POST /sim/ban                      {"seconds"}: ban the client IP (418) this long; 0 lifts it
    POST /sim/reset                    everything back to the configured start
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .binance_api import fmt, order_json, trade_json
from .config import to_decimal
from .errors import SimError
from .faults import DropRule, FailRule, Faults, OrderMeter, WeightMeter
from .matching import Engine

Body = dict[str, Any]
Result = tuple[int, Any]


class ControlApi:
    def __init__(self, engine: Engine, faults: Faults, weights: WeightMeter, orders: OrderMeter) -> None:
        self.engine = engine
        self.faults = faults
        self.weights = weights
        self.orders = orders
        self._routes: dict[tuple[str, str], Callable[[Body], Any]] = {
            ("GET", "/sim/ledger"): self.ledger,
            ("GET", "/sim/balances"): self.balances,
            ("POST", "/sim/balances"): self.set_balances,
            ("GET", "/sim/trades"): self.trades,
            ("GET", "/sim/state"): self.state,
            ("POST", "/sim/price"): self.price,
            ("POST", "/sim/step"): self.step,
            ("POST", "/sim/fill"): self.fill,
            ("POST", "/sim/cancel"): self.cancel,
            ("POST", "/sim/foreign-order"): self.foreign_order,
            ("POST", "/sim/latency"): self.latency,
            ("POST", "/sim/fail"): self.fail,
            ("POST", "/sim/drop"): self.drop,
            ("POST", "/sim/faults/clear"): self.clear_faults,
            ("POST", "/sim/weight"): self.weight,
            ("POST", "/sim/ban"): self.ban,
            ("POST", "/sim/reset"): self.reset,
        }

    def handle(self, method: str, path: str, body: Body) -> Result:
        handler = self._routes.get((method, path.rstrip("/")))
        if handler is None:
            known = sorted({p for _, p in self._routes})
            return 404, {"error": f"no control endpoint {method} {path}; known: {known}"}
        try:
            return 200, handler(body)
        except SimError as exc:
            return exc.status, exc.payload()
        except (KeyError, TypeError, ValueError) as exc:
            detail = f"missing field {exc}" if isinstance(exc, KeyError) else str(exc)
            return 400, {"error": detail}

    # reads ---------------------------------------------------------------------

    def ledger(self, body: Body) -> list:
        return self.engine.ledger(body.get("symbol") or None)

    def balances(self, body: Body) -> dict:
        return {asset: {"free": fmt(b.free), "locked": fmt(b.locked)}
                for asset, b in self.engine.balances().items()}

    def trades(self, body: Body) -> list:
        return [trade_json(t) for t in self.engine.trades(body.get("symbol") or None)]

    def state(self, body: Body) -> dict:
        return {
            "prices": {symbol: str(price) for symbol, price in self.engine.prices().items()},
            "openOrders": len(self.engine.open_orders()),
            "orders": len(self.engine.orders()),
            "trades": len(self.engine.trades()),
            "weightUsed": self.weights.used(),
            "weightLimit": self.weights.limit,
            "refused429": self.weights.refused + self.orders.refused,
            "refusedOrders": self.orders.refused,
            "banned418": self.weights.banned_replies,
            "bannedUntil": int(self.weights.banned_until * 1000),
            "orderCount10s": self.orders.counts()[0],
            "orderCount1d": self.orders.counts()[1],
        }

    # market and account --------------------------------------------------------

    def set_balances(self, body: Body) -> dict:
        amounts = {asset: to_decimal(amount, asset) for asset, amount in body.items()}
        for asset, amount in amounts.items():
            self.engine.set_balance(asset, amount)
        return self.balances({})

    def price(self, body: Body) -> dict:
        symbol = body["symbol"]
        trades = self.engine.set_price(symbol, to_decimal(body["price"], "price"))
        return {"symbol": self.engine.spec(symbol).market_id,
                "price": str(self.engine.price(symbol)),
                "trades": [trade_json(t) for t in trades]}

    def step(self, body: Body) -> dict:
        trades = self.engine.step(int(body.get("n", 1)), body.get("symbol") or None)
        return {"prices": {s: str(p) for s, p in self.engine.prices().items()},
                "trades": [trade_json(t) for t in trades]}

    def fill(self, body: Body) -> dict:
        symbol, order_id, client_id = _order_ref(body)
        qty = body.get("qty")
        trades = self.engine.fill_order(symbol, order_id, client_id,
                                        None if qty is None else to_decimal(qty, "qty"))
        order = self.engine.get_order(symbol, trades[0].order_id)
        return {"order": order_json(order), "trades": [trade_json(t) for t in trades]}

    def cancel(self, body: Body) -> dict:
        symbol, order_id, client_id = _order_ref(body)
        status = str(body.get("status", "CANCELED")).upper()
        return order_json(self.engine.cancel_order(symbol, order_id, client_id, status=status))

    def foreign_order(self, body: Body) -> dict:
        order, trades = self.engine.place_order(
            body["symbol"], str(body["side"]).upper(), str(body.get("type", "LIMIT")).upper(),
            to_decimal(body["quantity"], "quantity"), to_decimal(body["price"], "price"),
            body.get("clientOrderId") or _foreign_id(self.engine), foreign=True)
        return {"order": order_json(order), "trades": [trade_json(t) for t in trades]}

    # faults ----------------------------------------------------------------------

    def latency(self, body: Body) -> dict:
        self.faults.set_latency(int(body["ms"]), body.get("path"), body.get("method"))
        return {"ok": True}

    def fail(self, body: Body) -> dict:
        status = int(body.get("status", 503))
        code = body.get("code")
        rule = FailRule(
            path=body.get("path"), method=_method(body), count=int(body.get("count", 1)),
            status=status, code=None if code is None else int(code),
            msg=str(body.get("msg", "Service Unavailable")), hang_ms=int(body.get("hang_ms", 0)),
            execute=bool(body.get("execute", False)))
        self.faults.add_fail(rule)
        return {"ok": True}

    def drop(self, body: Body) -> dict:
        rule = DropRule(path=body.get("path", "/api/v3/order"),
                        method=_method(body, default="POST"), count=int(body.get("count", 1)),
                        mode=str(body.get("mode", "close")))
        self.faults.add_drop(rule)
        return {"ok": True}

    def clear_faults(self, body: Body) -> dict:
        self.faults.clear()
        return {"ok": True}

    def weight(self, body: Body) -> dict:
        limit = body.get("limit")
        self.weights.reset(None if limit is None else int(limit))
        return {"weightLimit": self.weights.limit, "weightUsed": self.weights.used()}

    def ban(self, body: Body) -> dict:
        seconds = float(body.get("seconds", 120))
        if seconds < 0:
            raise ValueError("seconds must not be negative")
        self.weights.ban(seconds)
        return {"bannedUntil": int(self.weights.banned_until * 1000)}

    def reset(self, body: Body) -> dict:
        """Engine back to its configured start, faults cleared, weight and order budgets as configured."""
        self.engine.reset()
        self.faults.clear()
        self.weights.reset(self.engine.config.weight_limit)
        self.orders.reset()
        return {"ok": True}


def _order_ref(body: Body) -> tuple[str, int | None, str | None]:
    order_id = body.get("orderId")
    client_id = body.get("clientOrderId") or body.get("origClientOrderId")
    if order_id is None and not client_id:
        raise ValueError("give orderId or clientOrderId")
    return body["symbol"], None if order_id is None else int(order_id), client_id


def _method(body: Body, default: str | None = None) -> str | None:
    method = body.get("method", default)
    return str(method).upper() if method else None


def _foreign_id(engine: Engine) -> str:
    return f"manual-{len(engine.orders()) + 1}"


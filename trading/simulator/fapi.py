"""Binance USDⓈ-M futures REST (`/fapi/v1`, `/v2`, `/v3`) on top of the futures engine, in the shapes
real `ccxt.binanceusdm` parses, with Binance's request weights. Control under `/sim/futures/...`.

Shapes ccxt depends on: exchangeInfo symbols carry `contractType` and `marginAsset` (else ccxt
takes them for spot) and `orderTypes`; account assets carry a non-zero `updateTime` (else ccxt drops
them); positionRisk v3 rows carry no leverage; a cancel answers with the order's own client id.
"""
from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal
from typing import Any

from . import errors
from .binance_api import (
    DAY_MS,
    Endpoint,
    Params,
    RestApi,
    book_ticker,
    decimal_param,
    fmt,
    int_param,
    kline_rows,
    limit_param,
    required,
    ticker_24hr,
)
from .config import to_decimal
from .errors import SimError
from .futures import CROSSED, GTC, GTX, ISOLATED, FuturesEngine, FuturesSpec, PositionView, _spec
from .matching import Order, Trade, now_ms

WEEK_MS = 7 * DAY_MS


def money_text(value: Decimal) -> str:
    return f"{value:.8f}"


def fapi_order_json(order: Order, reduce_only: bool) -> dict:
    avg = order.cumm_quote_qty / order.executed_qty if order.executed_qty else Decimal(0)
    return {
        "orderId": order.order_id, "symbol": order.symbol, "status": order.status,
        "clientOrderId": order.client_order_id, "price": fmt(order.price), "avgPrice": fmt(avg),
        "origQty": fmt(order.orig_qty), "executedQty": fmt(order.executed_qty), "cumQty": fmt(order.executed_qty),
        "cumQuote": fmt(order.cumm_quote_qty), "timeInForce": order.time_in_force, "type": order.type,
        "reduceOnly": reduce_only, "closePosition": False, "side": order.side, "positionSide": "BOTH",
        "stopPrice": "0", "workingType": "CONTRACT_PRICE", "priceProtect": False, "origType": order.type,
        "priceMatch": "NONE", "selfTradePreventionMode": "EXPIRE_MAKER", "goodTillDate": 0,
        "time": order.time, "updateTime": order.update_time,
    }


def _places(unit: Decimal) -> int:
    """Decimal places of a filter unit: 0.010 -> 2, 10 -> 0."""
    exponent = unit.normalize().as_tuple().exponent
    return max(0, -exponent) if isinstance(exponent, int) else 0  # units are finite: always an int


def fapi_symbol_json(spec: FuturesSpec) -> dict:
    return {
        "symbol": spec.market_id, "pair": spec.market_id, "contractType": "PERPETUAL",
        "deliveryDate": 4133404800000, "onboardDate": 1569398400000, "status": "TRADING",
        "baseAsset": spec.base, "quoteAsset": spec.quote, "marginAsset": spec.quote,
        "pricePrecision": _places(spec.tick),
        "quantityPrecision": _places(spec.step),
        "baseAssetPrecision": 8, "quotePrecision": 8, "underlyingType": "COIN",
        "orderTypes": ["LIMIT", "MARKET", "STOP", "STOP_MARKET", "TAKE_PROFIT", "TAKE_PROFIT_MARKET",
                       "TRAILING_STOP_MARKET"],
        "timeInForce": ["GTC", "IOC", "FOK", "GTX", "GTD"],
        "filters": [
            {"filterType": "PRICE_FILTER", "minPrice": fmt(spec.min_price), "maxPrice": fmt(spec.max_price),
             "tickSize": fmt(spec.tick)},
            {"filterType": "LOT_SIZE", "minQty": fmt(spec.min_qty), "maxQty": fmt(spec.max_qty),
             "stepSize": fmt(spec.step)},
            {"filterType": "MARKET_LOT_SIZE", "minQty": fmt(spec.min_qty), "maxQty": fmt(spec.max_qty),
             "stepSize": fmt(spec.step)},
            {"filterType": "MAX_NUM_ORDERS", "limit": spec.max_open_orders},
            {"filterType": "MIN_NOTIONAL", "notional": fmt(spec.min_notional)},
            {"filterType": "PERCENT_PRICE", "multiplierUp": f"{spec.multiplier_up:.4f}",
             "multiplierDown": f"{spec.multiplier_down:.4f}", "multiplierDecimal": "4"},
        ],
        "liquidationFee": f"{spec.liquidation_fee:.6f}", "marketTakeBound": "0.05", "triggerProtect": "0.0500",
    }


def fapi_trade_json(trade: Trade, realized: Decimal) -> dict:
    return {
        "buyer": trade.side == "BUY", "commission": money_text(trade.commission),
        "commissionAsset": trade.commission_asset, "id": trade.trade_id, "maker": trade.is_maker,
        "orderId": trade.order_id, "price": fmt(trade.price), "qty": fmt(trade.qty),
        "quoteQty": money_text(trade.quote_qty), "realizedPnl": money_text(realized), "side": trade.side,
        "positionSide": "BOTH", "symbol": trade.symbol, "time": trade.time,
    }


def position_json(view: PositionView, *, version: int) -> dict:
    row: dict[str, Any] = {
        "symbol": view.symbol, "positionSide": "BOTH", "positionAmt": fmt(view.qty),
        "entryPrice": fmt(view.entry), "breakEvenPrice": fmt(view.entry), "markPrice": money_text(view.mark),
        "unRealizedProfit": money_text(view.unrealized),
        "liquidationPrice": "0" if view.liquidation_price is None else fmt(view.liquidation_price),
        "notional": money_text(view.notional), "marginAsset": "USDT",
        "isolatedMargin": money_text(view.isolated_wallet + view.unrealized if view.margin_type == ISOLATED
                                     else Decimal(0)),
        "isolatedWallet": money_text(view.isolated_wallet), "updateTime": view.updated,
    }
    if version == 3:
        row.update({"initialMargin": money_text(abs(view.initial_margin)), "maintMargin": money_text(view.maint_margin),
                    "positionInitialMargin": money_text(abs(view.initial_margin)), "openOrderInitialMargin": "0",
                    "adl": 0, "bidNotional": "0", "askNotional": "0"})
    else:
        row.update({"leverage": str(view.leverage), "marginType": "cross" if view.margin_type == CROSSED
                    else "isolated", "maxNotionalValue": "1000000", "isAutoAddMargin": "false"})
    return row


def depth_weight(params: Params) -> int:
    limit = int_param(params, "limit", 500) or 500
    return 2 if limit <= 50 else 5 if limit <= 100 else 10 if limit <= 500 else 20


def klines_weight(params: Params) -> int:
    limit = int_param(params, "limit", 500) or 500
    return 1 if limit < 100 else 2 if limit < 500 else 5 if limit <= 1000 else 10


def by_symbol(with_symbol: int, without: int) -> Callable[[Params], int]:
    return lambda params: with_symbol if params.get("symbol") else without


def boolean_param(params: Params, name: str) -> bool:
    text = params.get(name, "false").lower()
    if text not in ("true", "false"):
        raise errors.illegal(name, "^(true|false)$")
    return text == "true"


class FapiApi(RestApi):
    """The USDⓈ-M endpoints; `route` maps (method, path) to an Endpoint."""

    def __init__(self, engine: FuturesEngine, weight_limit: Callable[[], int]) -> None:
        self.engine = engine
        self._weight_limit = weight_limit

    def route(self, method: str, path: str) -> Endpoint[FapiApi] | None:
        return FAPI_ROUTES.get((method, path))

    # public ----------------------------------------------------------------------

    def exchange_info(self, params: Params) -> dict:
        config = self.engine.config
        return {
            "timezone": "UTC", "serverTime": now_ms(), "futuresType": "U_MARGINED",
            "rateLimits": [
                {"rateLimitType": "REQUEST_WEIGHT", "interval": "MINUTE", "intervalNum": 1,
                 "limit": self._weight_limit()},
                {"rateLimitType": "ORDERS", "interval": "MINUTE", "intervalNum": 1, "limit": config.order_limit_minute},
                {"rateLimitType": "ORDERS", "interval": "SECOND", "intervalNum": 10, "limit": config.order_limit_10s},
            ],
            "exchangeFilters": [], "assets": [{"asset": "USDT", "marginAvailable": True, "autoAssetExchange": "0"}],
            "symbols": [fapi_symbol_json(_spec_of(self.engine, s.market_id)) for s in self.engine.specs()],
        }

    def ticker_24hr(self, params: Params) -> dict | list:
        return self._per_symbol(params, self._ticker_24hr)

    def ticker_price(self, params: Params) -> dict | list:
        return self._per_symbol(params, lambda spec: {
            "symbol": spec.market_id, "price": fmt(self.engine.price(spec.market_id)), "time": now_ms()})

    def book_ticker(self, params: Params) -> dict | list:
        return self._per_symbol(params, self._book_ticker)

    def depth(self, params: Params) -> dict:
        spec = self.engine.spec(required(params, "symbol"))
        limit = limit_param(params, 500, 1000)
        price = self.engine.price(spec.market_id)
        levels = range(1, limit + 1)
        now = now_ms()
        return {"lastUpdateId": self.engine.update_id(), "E": now, "T": now,
                "bids": [[fmt(price - k * spec.tick), fmt(spec.book_qty)] for k in levels if price - k * spec.tick > 0],
                "asks": [[fmt(price + k * spec.tick), fmt(spec.book_qty)] for k in levels]}

    def klines(self, params: Params) -> list:
        return self._klines(params, mark=False)

    def mark_price_klines(self, params: Params) -> list:
        return self._klines(params, mark=True)

    def premium_index(self, params: Params) -> dict | list:
        def row(spec) -> dict:
            mark = self.engine.mark_price(spec.market_id)
            return {"symbol": spec.market_id, "markPrice": money_text(mark),
                    "indexPrice": money_text(self.engine.price(spec.market_id)),
                    "estimatedSettlePrice": money_text(mark),
                    "lastFundingRate": money_text(self.engine.funding_rate), "interestRate": "0.00010000",
                    "nextFundingTime": self.engine.next_funding_time(spec.market_id), "time": now_ms()}
        return self._per_symbol(params, row)

    def funding_rate(self, params: Params) -> list:
        symbol = params.get("symbol") or None
        start, end = int_param(params, "startTime"), int_param(params, "endTime")
        limit = limit_param(params, 100, 1000)
        rows = [r for r in self.engine.funding_history(symbol)
                if (start is None or r.funding_time >= start) and (end is None or r.funding_time <= end)]
        rows = rows[:limit] if start is not None else rows[-limit:]
        return [{"symbol": r.symbol, "fundingRate": money_text(r.rate), "fundingTime": r.funding_time,
                 "markPrice": money_text(r.mark)} for r in rows]

    # signed: settings and account ------------------------------------------------------

    def leverage_bracket(self, params: Params) -> list:
        specs = [self.engine.spec(params["symbol"])] if params.get("symbol") else self.engine.specs()
        out = []
        for spec in specs:
            tiers = _spec_of(self.engine, spec.market_id).brackets
            out.append({"symbol": spec.market_id, "brackets": [
                {"bracket": n, "initialLeverage": b.max_leverage, "notionalCap": int(b.cap), "notionalFloor": int(b.floor),
                 "maintMarginRatio": float(b.mmr), "cum": float(b.cum)} for n, b in enumerate(tiers, 1)]})
        return out if not params.get("symbol") else out[:1]

    def symbol_config(self, params: Params) -> list:
        specs = [self.engine.spec(params["symbol"])] if params.get("symbol") else self.engine.specs()
        rows = []
        for spec in specs:
            leverage, margin_type = self.engine.leverage(spec.market_id)
            rows.append({"symbol": spec.market_id, "marginType": margin_type, "isAutoAddMargin": "false",
                         "leverage": leverage, "maxNotionalValue": "1000000"})
        return rows

    def set_leverage(self, params: Params) -> dict:
        spec = self.engine.spec(required(params, "symbol"))
        leverage = int_param(params, "leverage")
        if leverage is None:
            raise errors.mandatory("leverage")
        self.engine.set_leverage(spec.market_id, leverage)
        return {"leverage": leverage, "maxNotionalValue": "1000000", "symbol": spec.market_id}

    def set_margin_type(self, params: Params) -> dict:
        spec = self.engine.spec(required(params, "symbol"))
        self.engine.set_margin_type(spec.market_id, required(params, "marginType").upper())
        return {"code": 200, "msg": "success"}

    def position_mode(self, params: Params) -> dict:
        return {"dualSidePosition": self.engine.hedge_mode}

    def set_position_mode(self, params: Params) -> dict:
        self.engine.set_hedge_mode(boolean_param(params, "dualSidePosition"))
        return {"code": 200, "msg": "success"}

    def multi_assets_margin(self, params: Params) -> dict:
        return {"multiAssetsMargin": False}

    def commission_rate(self, params: Params) -> dict:
        spec = self.engine.spec(required(params, "symbol"))
        config = self.engine.config
        return {"symbol": spec.market_id, "makerCommissionRate": f"{config.maker_fee:.4f}",
                "takerCommissionRate": f"{config.taker_fee:.4f}"}

    def account(self, params: Params) -> dict:
        view = self.engine.account()
        now = now_ms()
        asset = {
            "asset": "USDT", "walletBalance": money_text(view.wallet), "unrealizedProfit": money_text(view.unrealized),
            "marginBalance": money_text(view.margin_balance), "maintMargin": money_text(view.maint_margin),
            "initialMargin": money_text(view.position_margin + view.open_order_margin),
            "positionInitialMargin": money_text(view.position_margin),
            "openOrderInitialMargin": money_text(view.open_order_margin),
            "crossWalletBalance": money_text(view.wallet), "crossUnPnl": money_text(view.unrealized),
            "availableBalance": money_text(view.available), "maxWithdrawAmount": money_text(view.available),
            "updateTime": now,
        }
        return {
            "totalInitialMargin": asset["initialMargin"], "totalMaintMargin": asset["maintMargin"],
            "totalWalletBalance": asset["walletBalance"], "totalUnrealizedProfit": asset["unrealizedProfit"],
            "totalMarginBalance": asset["marginBalance"], "availableBalance": asset["availableBalance"],
            "maxWithdrawAmount": asset["maxWithdrawAmount"], "assets": [asset],
            "positions": [position_json(p, version=3) for p in self.engine.positions() if p.qty],
        }

    def position_risk_v2(self, params: Params) -> list:
        return self._positions(params, version=2)

    def position_risk_v3(self, params: Params) -> list:
        return self._positions(params, version=3)

    def income(self, params: Params) -> list:
        symbol = params.get("symbol") or None
        income_type = params.get("incomeType") or None
        start, end = int_param(params, "startTime"), int_param(params, "endTime")
        limit = limit_param(params, 100, 1000)
        rows = [r for r in self.engine.income(symbol, income_type)
                if (start is None or r.time >= start) and (end is None or r.time <= end)]
        rows = rows[:limit] if start is not None else rows[-limit:]
        return [{"symbol": r.symbol, "incomeType": r.income_type, "income": money_text(r.income), "asset": r.asset,
                 "info": r.income_type, "time": r.time, "tranId": r.tran_id, "tradeId": ""} for r in rows]

    # signed: orders -----------------------------------------------------------------

    def new_order(self, params: Params) -> dict:
        spec = self.engine.spec(required(params, "symbol"))
        order_type = required(params, "type")
        tif = params.get("timeInForce", "")
        if order_type == "LIMIT" and tif == "":
            raise errors.mandatory("timeInForce")
        if order_type == "LIMIT" and tif not in (GTC, GTX):
            raise SimError(errors.INVALID_TIF, "Invalid timeInForce.")
        order, _ = self.engine.place_order(
            spec.market_id, required(params, "side"), order_type, decimal_param(params, "quantity"),
            decimal_param(params, "price"), params.get("newClientOrderId") or None,
            time_in_force=tif or GTC, reduce_only=boolean_param(params, "reduceOnly"),
            position_side=params.get("positionSide") or "BOTH")
        return fapi_order_json(order, self.engine.is_reduce_only(order.order_id))

    def get_order(self, params: Params) -> dict:
        order = self.engine.get_order(*self._order_ref(params))
        return fapi_order_json(order, self.engine.is_reduce_only(order.order_id))

    def cancel_order(self, params: Params) -> dict:
        order = self.engine.cancel_order(*self._order_ref(params))
        return fapi_order_json(order, self.engine.is_reduce_only(order.order_id))

    def open_orders(self, params: Params) -> list:
        return [fapi_order_json(o, self.engine.is_reduce_only(o.order_id))
                for o in self.engine.open_orders(params.get("symbol") or None)]

    def cancel_all(self, params: Params) -> dict:
        self.engine.cancel_all(required(params, "symbol"))
        return {"code": 200, "msg": "The operation of cancel all open order is done."}

    def all_orders(self, params: Params) -> list:
        symbol = required(params, "symbol")
        limit = limit_param(params, 500, 1000)
        start, end = int_param(params, "startTime"), int_param(params, "endTime")
        orders = [o for o in self.engine.orders(symbol)
                  if (start is None or o.time >= start) and (end is None or o.time <= end)]
        orders = orders[:limit] if start is not None else orders[-limit:]
        return [fapi_order_json(o, self.engine.is_reduce_only(o.order_id)) for o in orders]

    def user_trades(self, params: Params) -> list:
        """Trades in at most a 7-day window (the last 7 days without one), as Binance answers."""
        start, end = int_param(params, "startTime"), int_param(params, "endTime")
        from_id = int_param(params, "fromId")
        if from_id is not None and (start is not None or end is not None):
            raise SimError(-4080, "fromId cannot be sent with startTime or endTime.")
        if start is not None and end is not None and end - start > WEEK_MS:
            raise SimError(-1127, "More than 7 days between startTime and endTime.")
        if from_id is None:
            if start is None:
                if end is None:
                    end = now_ms()
                start = end - WEEK_MS
            elif end is None:
                end = start + WEEK_MS
        trades = self.engine.trades(required(params, "symbol"), order_id=int_param(params, "orderId"),
                                    from_id=from_id, start_time=start, end_time=end,
                                    limit=limit_param(params, 500, 1000))
        return [fapi_trade_json(t, self.engine.realized_pnl(t.trade_id)) for t in trades]

    # helpers ------------------------------------------------------------------------

    def open_listen_key(self, params: Params) -> dict:
        return {"listenKey": self.engine.open_listen_key()}

    def keep_listen_key(self, params: Params) -> dict:
        return {"listenKey": self.engine.keep_listen_key()}

    def close_listen_key(self, params: Params) -> dict:
        self.engine.close_listen_key()
        return {}

    def _order_ref(self, params: Params) -> tuple[str, int | None, str | None]:
        return required(params, "symbol"), int_param(params, "orderId"), params.get("origClientOrderId") or None

    def _positions(self, params: Params, *, version: int) -> list:
        views = self.engine.positions()
        if params.get("symbol"):
            market_id = self.engine.spec(params["symbol"]).market_id
            views = [v for v in views if v.symbol == market_id]
        open_symbols = {o.symbol for o in self.engine.open_orders()}
        if version == 3:  # v3 lists only symbols with a position or open orders
            views = [v for v in views if v.qty or v.symbol in open_symbols]
        return [position_json(v, version=version) for v in views]

    def _per_symbol(self, params: Params, build: Callable[[Any], dict]) -> dict | list:
        if params.get("symbol"):
            return build(self.engine.spec(params["symbol"]))
        return [build(spec) for spec in self.engine.specs()]

    def _book_ticker(self, spec) -> dict:
        return {**book_ticker(self.engine, spec), "time": now_ms()}

    def _ticker_24hr(self, spec) -> dict:
        row = ticker_24hr(self.engine, spec)
        return {key: value for key, value in row.items() if key not in SPOT_ONLY_TICKER_KEYS}

    def _klines(self, params: Params, *, mark: bool) -> list:
        rows = kline_rows(self.engine, params, max_limit=1500)
        if mark:  # mark-price klines carry prices only
            basis = 1 + self.engine.mark_basis
            rows = [[r[0], *(fmt(Decimal(v) * basis) for v in r[1:5]), "0", r[6], "0", 0, "0", "0", "0"] for r in rows]
        return rows


# The futures 24-hour ticker has no book and no previous close (ccxt reads bid and ask as None).
SPOT_ONLY_TICKER_KEYS = frozenset({"bidPrice", "bidQty", "askPrice", "askQty", "prevClosePrice"})


def _spec_of(engine: FuturesEngine, market_id: str) -> FuturesSpec:
    return _spec(engine._market(market_id))


FAPI_ROUTES: dict[tuple[str, str], Endpoint[FapiApi]] = {
    ("GET", "/fapi/v1/ping"): Endpoint(FapiApi.ping, 1, False),
    ("GET", "/fapi/v1/time"): Endpoint(FapiApi.server_time, 1, False),
    ("GET", "/fapi/v1/exchangeInfo"): Endpoint(FapiApi.exchange_info, 1, False),
    ("GET", "/fapi/v1/ticker/24hr"): Endpoint(FapiApi.ticker_24hr, by_symbol(1, 40), False),
    ("GET", "/fapi/v1/ticker/price"): Endpoint(FapiApi.ticker_price, by_symbol(1, 2), False),
    ("GET", "/fapi/v2/ticker/price"): Endpoint(FapiApi.ticker_price, by_symbol(1, 2), False),
    ("GET", "/fapi/v1/ticker/bookTicker"): Endpoint(FapiApi.book_ticker, by_symbol(2, 5), False),
    ("GET", "/fapi/v1/depth"): Endpoint(FapiApi.depth, depth_weight, False),
    ("GET", "/fapi/v1/klines"): Endpoint(FapiApi.klines, klines_weight, False),
    ("GET", "/fapi/v1/markPriceKlines"): Endpoint(FapiApi.mark_price_klines, klines_weight, False),
    ("GET", "/fapi/v1/premiumIndex"): Endpoint(FapiApi.premium_index, 1, False),
    ("GET", "/fapi/v1/fundingRate"): Endpoint(FapiApi.funding_rate, 1, False),
    ("GET", "/fapi/v1/leverageBracket"): Endpoint(FapiApi.leverage_bracket, 1, True),
    ("GET", "/fapi/v1/symbolConfig"): Endpoint(FapiApi.symbol_config, 5, True),
    ("POST", "/fapi/v1/leverage"): Endpoint(FapiApi.set_leverage, 1, True),
    ("POST", "/fapi/v1/marginType"): Endpoint(FapiApi.set_margin_type, 1, True),
    ("GET", "/fapi/v1/positionSide/dual"): Endpoint(FapiApi.position_mode, 30, True),
    ("POST", "/fapi/v1/positionSide/dual"): Endpoint(FapiApi.set_position_mode, 1, True),
    ("GET", "/fapi/v1/multiAssetsMargin"): Endpoint(FapiApi.multi_assets_margin, 30, True),
    ("GET", "/fapi/v1/commissionRate"): Endpoint(FapiApi.commission_rate, 20, True),
    ("GET", "/fapi/v2/account"): Endpoint(FapiApi.account, 5, True),
    ("GET", "/fapi/v3/account"): Endpoint(FapiApi.account, 5, True),
    ("GET", "/fapi/v2/positionRisk"): Endpoint(FapiApi.position_risk_v2, 5, True),
    ("GET", "/fapi/v3/positionRisk"): Endpoint(FapiApi.position_risk_v3, 5, True),
    ("GET", "/fapi/v1/income"): Endpoint(FapiApi.income, 30, True),
    ("POST", "/fapi/v1/order"): Endpoint(FapiApi.new_order, 0, True),
    ("GET", "/fapi/v1/order"): Endpoint(FapiApi.get_order, 1, True),
    ("DELETE", "/fapi/v1/order"): Endpoint(FapiApi.cancel_order, 1, True),
    ("GET", "/fapi/v1/openOrders"): Endpoint(FapiApi.open_orders, by_symbol(1, 40), True),
    ("DELETE", "/fapi/v1/allOpenOrders"): Endpoint(FapiApi.cancel_all, 1, True),
    ("GET", "/fapi/v1/allOrders"): Endpoint(FapiApi.all_orders, 5, True),
    ("GET", "/fapi/v1/userTrades"): Endpoint(FapiApi.user_trades, 5, True),
    # The user-data stream's key: an API key, no signature.
    ("POST", "/fapi/v1/listenKey"): Endpoint(FapiApi.open_listen_key, 1, False, api_key=True),
    ("PUT", "/fapi/v1/listenKey"): Endpoint(FapiApi.keep_listen_key, 1, False, api_key=True),
    ("DELETE", "/fapi/v1/listenKey"): Endpoint(FapiApi.close_listen_key, 1, False, api_key=True),
}


class FuturesControl:
    """`/sim/futures/...`: GET state; POST price {symbol, price}, step {n, symbol}, mark_basis {basis},
    funding_rate {rate}, fund_now {symbol}, wallet {amount}, hedge_mode {on}, reset."""

    def __init__(self, engine: FuturesEngine) -> None:
        self.engine = engine

    def handle(self, method: str, action: str, body: dict) -> tuple[int, Any]:
        try:
            if method == "GET" and action in ("", "state"):
                return 200, self.state()
            if method != "POST":
                return 405, {"error": f"{method} /sim/futures/{action} is not supported"}
            if action == "price":
                self.engine.set_price(str(body["symbol"]), to_decimal(body["price"], "price"))
            elif action == "step":
                self.engine.step(int(body.get("n", 1)), body.get("symbol") or None)
            elif action == "mark_basis":
                self.engine.set_mark_basis(body["basis"])
            elif action == "funding_rate":
                self.engine.set_funding_rate(body["rate"])
            elif action == "fund_now":
                self.engine.fund_now(body.get("symbol") or None)
            elif action == "wallet":
                self.engine.set_wallet(body["amount"])
            elif action == "hedge_mode":
                self.engine.set_hedge_mode(bool(body["on"]))
            elif action == "reset":
                self.engine.reset()
            else:
                return 404, {"error": f"unknown control /sim/futures/{action}"}
        except KeyError as exc:
            return 400, {"error": f"missing field {exc.args[0]!r}"}
        except (TypeError, ValueError) as exc:
            return 400, {"error": str(exc)}
        except SimError as exc:
            return 400, exc.payload()
        return 200, self.state()

    def state(self) -> dict:
        view = self.engine.account()
        return {
            "wallet": str(view.wallet), "unrealizedProfit": str(view.unrealized),
            "marginBalance": str(view.margin_balance), "availableBalance": str(view.available),
            "markBasis": str(self.engine.mark_basis), "fundingRate": str(self.engine.funding_rate),
            "positions": [{"symbol": p.symbol, "qty": str(p.qty), "entry": str(p.entry), "mark": str(p.mark),
                           "liquidationPrice": None if p.liquidation_price is None else str(p.liquidation_price),
                           "leverage": p.leverage, "marginType": p.margin_type} for p in self.engine.positions()],
            "income": [{"tranId": r.tran_id, "symbol": r.symbol, "type": r.income_type, "income": str(r.income),
                        "time": r.time} for r in self.engine.income()],
            "prices": {s: str(p) for s, p in self.engine.prices().items()},
            "openOrders": len(self.engine.open_orders()), "trades": len(self.engine.trades()),
        }

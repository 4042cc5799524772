"""Binance spot REST v3 endpoints on top of the engine: parameters in, Binance JSON out.

Each endpoint takes the request's parameters (a dict of strings) and returns a JSON-ready
value, or raises SimError. Decimals are written as strings with 8 decimals, like Binance.
"""
from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any, Generic, TypeVar, overload

from . import errors
from .config import MarketSpec
from .errors import SimError
from .matching import BUY, LIMIT, LIMIT_MAKER, Engine, Order, Trade, now_ms
from .pricepath import Candle

Params = dict[str, str]
Weight = int | Callable[[Params], int]

DECIMAL_PATTERN = r"^([0-9]{1,20})(\.[0-9]{1,20})?$"
INTEGER_PATTERN = r"^[0-9]{1,20}$"
_DECIMAL_RE = re.compile(DECIMAL_PATTERN)
_INTEGER_RE = re.compile(INTEGER_PATTERN)
INTERVALS_MS = {
    "1m": 60_000, "3m": 180_000, "5m": 300_000, "15m": 900_000, "30m": 1_800_000,
    "1h": 3_600_000, "2h": 7_200_000, "4h": 14_400_000, "6h": 21_600_000, "8h": 28_800_000,
    "12h": 43_200_000, "1d": 86_400_000,
}
DAY_MS = 86_400_000


def fmt(value: Decimal) -> str:
    return f"{value:.8f}"


ZERO_TEXT = fmt(Decimal("0"))


ApiT = TypeVar("ApiT")


@dataclass(frozen=True)
class Endpoint(Generic[ApiT]):
    """One route: the API method that answers it (spot's BinanceApi or futures' FapiApi), its
    request weight, whether it needs a signature, and whether it needs an API key alone."""

    handler: Callable[[ApiT, Params], Any]
    weight: Weight
    signed: bool
    api_key: bool = False

    def weight_of(self, params: Params) -> int:
        return self.weight(params) if callable(self.weight) else self.weight


# --------------------------------------------------------------------- parameters

def required(params: Params, name: str) -> str:
    value = params.get(name, "")
    if value == "":
        raise errors.mandatory(name)
    return value


def decimal_param(params: Params, name: str) -> Decimal:
    text = required(params, name)
    if not _DECIMAL_RE.match(text):
        raise errors.illegal(name, DECIMAL_PATTERN)
    try:
        return Decimal(text)
    except InvalidOperation:
        raise errors.illegal(name, DECIMAL_PATTERN) from None


@overload
def int_param(params: Params, name: str, default: int) -> int: ...
@overload
def int_param(params: Params, name: str, default: None = None) -> int | None: ...
def int_param(params: Params, name: str, default: int | None = None) -> int | None:
    text = params.get(name, "")
    if text == "":
        return default
    if not _INTEGER_RE.match(text):
        raise errors.illegal(name, INTEGER_PATTERN)
    return int(text)


def limit_param(params: Params, default: int, maximum: int) -> int:
    limit = int_param(params, "limit", default)
    return max(1, min(limit, maximum))


def depth_weight(params: Params) -> int:
    limit = int_param(params, "limit", 100) or 100
    return 5 if limit <= 100 else 25 if limit <= 500 else 50 if limit <= 1000 else 250


def symbol_weight(with_symbol: int, without: int) -> Callable[[Params], int]:
    return lambda params: with_symbol if params.get("symbol") else without


def tickers_weight(params: Params) -> int:
    """ticker/24hr: 2 for one symbol or a `symbols` list of up to 20, 40 for 21-100, 80 for more or all."""
    if params.get("symbol"):
        return 2
    listed = params.get("symbols", "")
    if not listed:
        return 80
    count = listed.count(",") + 1
    return 2 if count <= 20 else 40 if count <= 100 else 80


# ------------------------------------------------------------------ JSON shapes

def order_json(order: Order) -> dict:
    """GET /api/v3/order and openOrders shape."""
    return {
        "symbol": order.symbol, "orderId": order.order_id, "orderListId": -1,
        "clientOrderId": order.client_order_id, "price": fmt(order.price),
        "origQty": fmt(order.orig_qty), "executedQty": fmt(order.executed_qty),
        "cummulativeQuoteQty": fmt(order.cumm_quote_qty), "status": order.status,
        "timeInForce": order.time_in_force, "type": order.type, "side": order.side,
        "stopPrice": ZERO_TEXT, "icebergQty": ZERO_TEXT, "time": order.time,
        "updateTime": order.update_time, "isWorking": True, "workingTime": order.time,
        "origQuoteOrderQty": ZERO_TEXT, "selfTradePreventionMode": "NONE",
    }


def fill_json(trade: Trade) -> dict:
    return {"price": fmt(trade.price), "qty": fmt(trade.qty), "commission": fmt(trade.commission),
            "commissionAsset": trade.commission_asset, "tradeId": trade.trade_id}


def new_order_json(order: Order, fills: list[Trade], resp_type: str) -> dict:
    """POST /api/v3/order shape for newOrderRespType ACK, RESULT or FULL."""
    result: dict[str, Any] = {
        "symbol": order.symbol, "orderId": order.order_id, "orderListId": -1,
        "clientOrderId": order.client_order_id, "transactTime": order.update_time,
    }
    if resp_type == "ACK":
        return result
    result.update({
        "price": fmt(order.price), "origQty": fmt(order.orig_qty),
        "executedQty": fmt(order.executed_qty),
        "cummulativeQuoteQty": fmt(order.cumm_quote_qty), "status": order.status,
        "timeInForce": order.time_in_force, "type": order.type, "side": order.side,
        "workingTime": order.time, "selfTradePreventionMode": "NONE",
    })
    if resp_type == "FULL":
        result["fills"] = [fill_json(trade) for trade in fills]
    return result


def cancel_json(order: Order, cancel_client_id: str) -> dict:
    """DELETE /api/v3/order shape: `clientOrderId` is the cancel request's own id, the order's
    id is in `origClientOrderId` (as on Binance)."""
    return {
        "symbol": order.symbol, "origClientOrderId": order.client_order_id,
        "orderId": order.order_id, "orderListId": -1, "clientOrderId": cancel_client_id,
        "transactTime": order.update_time, "price": fmt(order.price),
        "origQty": fmt(order.orig_qty), "executedQty": fmt(order.executed_qty),
        "cummulativeQuoteQty": fmt(order.cumm_quote_qty), "status": order.status,
        "timeInForce": order.time_in_force, "type": order.type, "side": order.side,
        "selfTradePreventionMode": "NONE",
    }


def trade_json(trade: Trade) -> dict:
    return {
        "symbol": trade.symbol, "id": trade.trade_id, "orderId": trade.order_id,
        "orderListId": -1, "price": fmt(trade.price), "qty": fmt(trade.qty),
        "quoteQty": fmt(trade.quote_qty), "commission": fmt(trade.commission),
        "commissionAsset": trade.commission_asset, "time": trade.time,
        "isBuyer": trade.side == BUY, "isMaker": trade.is_maker, "isBestMatch": True,
    }


def symbol_json(spec: MarketSpec) -> dict:
    return {
        "symbol": spec.market_id, "status": "TRADING",
        "baseAsset": spec.base, "baseAssetPrecision": 8,
        "quoteAsset": spec.quote, "quotePrecision": 8, "quoteAssetPrecision": 8,
        "baseCommissionPrecision": 8, "quoteCommissionPrecision": 8,
        "orderTypes": [LIMIT, LIMIT_MAKER],
        "icebergAllowed": False, "ocoAllowed": False, "otoAllowed": False,
        "quoteOrderQtyMarketAllowed": False, "allowTrailingStop": False,
        "cancelReplaceAllowed": False, "isSpotTradingAllowed": True,
        "isMarginTradingAllowed": False,
        "filters": [
            {"filterType": "PRICE_FILTER", "minPrice": fmt(spec.min_price),
             "maxPrice": fmt(spec.max_price), "tickSize": fmt(spec.tick)},
            {"filterType": "LOT_SIZE", "minQty": fmt(spec.min_qty), "maxQty": fmt(spec.max_qty),
             "stepSize": fmt(spec.step)},
            {"filterType": "NOTIONAL", "minNotional": fmt(spec.min_notional),
             "applyMinToMarket": True, "maxNotional": "9000000.00000000",
             "applyMaxToMarket": False, "avgPriceMins": 5},
        ],
        "permissions": [], "permissionSets": [["SPOT"]],
        "defaultSelfTradePreventionMode": "NONE", "allowedSelfTradePreventionModes": ["NONE"],
    }


def kline_row(candle: Candle, interval_ms: int) -> list:
    quote_volume = (candle.volume * candle.close).quantize(Decimal("0.00000001"))
    return [candle.open_time, fmt(candle.open), fmt(candle.high), fmt(candle.low),
            fmt(candle.close), fmt(candle.volume), candle.open_time + interval_ms - 1,
            fmt(quote_volume), 0, ZERO_TEXT, ZERO_TEXT, "0"]


def aggregate(candles: list[Candle], interval_ms: int) -> list[Candle]:
    """Merge candles into buckets of `interval_ms` aligned on the epoch."""
    merged: list[Candle] = []
    for candle in candles:
        bucket = candle.open_time // interval_ms * interval_ms
        if merged and merged[-1].open_time == bucket:
            last = merged[-1]
            merged[-1] = Candle(bucket, last.open, max(last.high, candle.high),
                                min(last.low, candle.low), candle.close,
                                last.volume + candle.volume)
        else:
            merged.append(Candle(bucket, candle.open, candle.high, candle.low, candle.close,
                                 candle.volume))
    return merged


# ------------------------------------------------- market data shared by spot and futures

def kline_rows(engine: Engine, params: Params, *, max_limit: int) -> list[list]:
    """Klines of `params` (symbol, interval, startTime, endTime, limit) from the engine's path."""
    spec = engine.spec(required(params, "symbol"))
    interval_ms = INTERVALS_MS.get(required(params, "interval"))
    base_ms = engine.interval_ms(spec.market_id)
    if interval_ms is None or interval_ms < base_ms or interval_ms % base_ms:
        raise SimError(errors.INVALID_INTERVAL, "Invalid interval.")
    start = int_param(params, "startTime")
    end = int_param(params, "endTime")
    limit = limit_param(params, 500, max_limit)
    candles = [c for c in aggregate(engine.candles(spec.market_id), interval_ms)
               if (start is None or c.open_time >= start)
               and (end is None or c.open_time <= end)]
    candles = candles[:limit] if start is not None else candles[-limit:]
    return [kline_row(candle, interval_ms) for candle in candles]


def book_ticker(engine: Engine, spec: MarketSpec) -> dict:
    price = engine.price(spec.market_id)
    return {"symbol": spec.market_id, "bidPrice": fmt(max(price - spec.tick, spec.tick)),
            "bidQty": fmt(spec.book_qty), "askPrice": fmt(price + spec.tick),
            "askQty": fmt(spec.book_qty)}


def ticker_24hr(engine: Engine, spec: MarketSpec) -> dict:
    """The rolling-day ticker of spot's shape (futures leave out the book and previous close)."""
    candles = engine.candles(spec.market_id)
    last = candles[-1]
    day = [c for c in candles if c.open_time > last.open_time - DAY_MS]
    open_price, price = day[0].open, last.close
    volume = sum((c.volume for c in day), Decimal("0"))
    quote_volume = sum((c.volume * c.close for c in day), Decimal("0"))
    change = price - open_price
    now = now_ms()
    return {
        "symbol": spec.market_id,
        "priceChange": fmt(change),
        "priceChangePercent": f"{change / open_price * 100:.3f}",
        "weightedAvgPrice": fmt(quote_volume / volume if volume else price),
        "prevClosePrice": fmt(day[0].open), "lastPrice": fmt(price),
        "lastQty": ZERO_TEXT, **book_ticker(engine, spec),
        "openPrice": fmt(open_price), "highPrice": fmt(max(c.high for c in day)),
        "lowPrice": fmt(min(c.low for c in day)), "volume": fmt(volume),
        "quoteVolume": fmt(quote_volume), "openTime": now - DAY_MS, "closeTime": now,
        "firstId": -1, "lastId": -1, "count": 0,
    }


class RestApi:
    """What every simulated REST API answers the same way."""

    def ping(self, params: Params) -> dict:
        return {}

    def server_time(self, params: Params) -> dict:
        return {"serverTime": now_ms()}


# ------------------------------------------------------------------- endpoints

class BinanceApi(RestApi):
    """The REST v3 endpoints; `routes` maps (method, path) to an Endpoint."""

    def __init__(self, engine: Engine, weight_limit: Callable[[], int]) -> None:
        self.engine = engine
        self._weight_limit = weight_limit
        config = engine.config
        self._order_limits = (config.order_limit_10s, config.order_limit_day)

    def route(self, method: str, path: str) -> Endpoint[BinanceApi] | None:
        return ROUTES.get((method, path))

    # public ------------------------------------------------------------------

    def exchange_info(self, params: Params) -> dict:
        specs = self.engine.specs()
        wanted = self._symbols_filter(params)
        if wanted is not None:
            specs = [self.engine.spec(symbol) for symbol in wanted]
        return {
            "timezone": "UTC", "serverTime": now_ms(),
            "rateLimits": [
                {"rateLimitType": "REQUEST_WEIGHT", "interval": "MINUTE", "intervalNum": 1, "limit": self._weight_limit()},
                {"rateLimitType": "ORDERS", "interval": "SECOND", "intervalNum": 10, "limit": self._order_limits[0]},
                {"rateLimitType": "ORDERS", "interval": "DAY", "intervalNum": 1, "limit": self._order_limits[1]},
                {"rateLimitType": "RAW_REQUESTS", "interval": "MINUTE", "intervalNum": 5, "limit": 300000},
            ],
            "exchangeFilters": [],
            "symbols": [symbol_json(spec) for spec in specs],
        }

    def ticker_24hr(self, params: Params) -> dict | list:
        return self._per_symbol(params, lambda spec: ticker_24hr(self.engine, spec))

    def ticker_price(self, params: Params) -> dict | list:
        return self._per_symbol(params, lambda spec: {
            "symbol": spec.market_id, "price": fmt(self.engine.price(spec.market_id))})

    def book_ticker(self, params: Params) -> dict | list:
        return self._per_symbol(params, lambda spec: book_ticker(self.engine, spec))

    def depth(self, params: Params) -> dict:
        spec = self.engine.spec(required(params, "symbol"))
        limit = limit_param(params, 100, 5000)
        price = self.engine.price(spec.market_id)
        levels = range(1, limit + 1)
        bids = [[fmt(price - k * spec.tick), fmt(spec.book_qty)] for k in levels
                if price - k * spec.tick > 0]
        asks = [[fmt(price + k * spec.tick), fmt(spec.book_qty)] for k in levels]
        return {"lastUpdateId": self.engine.update_id(), "bids": bids, "asks": asks}

    def klines(self, params: Params) -> list:
        return kline_rows(self.engine, params, max_limit=1000)

    # signed ------------------------------------------------------------------

    def account(self, params: Params) -> dict:
        config = self.engine.config
        maker_bps = int(config.maker_fee * 10_000)
        taker_bps = int(config.taker_fee * 10_000)
        return {
            "makerCommission": maker_bps, "takerCommission": taker_bps,
            "buyerCommission": 0, "sellerCommission": 0,
            "commissionRates": {"maker": fmt(config.maker_fee), "taker": fmt(config.taker_fee),
                                "buyer": ZERO_TEXT, "seller": ZERO_TEXT},
            "canTrade": True, "canWithdraw": False, "canDeposit": False, "brokered": False,
            "requireSelfTradePrevention": False, "preventSor": False,
            "updateTime": now_ms(), "accountType": "SPOT",
            "balances": [{"asset": asset, "free": fmt(balance.free),
                          "locked": fmt(balance.locked)}
                         for asset, balance in self.engine.balances().items()],
            "permissions": ["SPOT"], "uid": 1,
        }

    def new_order(self, params: Params) -> dict:
        args = self._order_args(params)
        order, fills = self.engine.place_order(*args)
        resp_type = params.get("newOrderRespType") or "FULL"
        if resp_type not in ("ACK", "RESULT", "FULL"):
            resp_type = "FULL"
        return new_order_json(order, fills, resp_type)

    def test_order(self, params: Params) -> dict:
        self.engine.validate_order(*self._order_args(params))
        return {}

    def get_order(self, params: Params) -> dict:
        symbol, order_id, client_id = self._order_ref(params)
        return order_json(self.engine.get_order(symbol, order_id, client_id))

    def cancel_order(self, params: Params) -> dict:
        symbol, order_id, client_id = self._order_ref(params)
        order = self.engine.cancel_order(symbol, order_id, client_id)
        return cancel_json(order, params.get("newClientOrderId") or f"sim-cancel-{order.order_id}")

    def open_orders(self, params: Params) -> list:
        symbol = params.get("symbol") or None
        return [order_json(order) for order in self.engine.open_orders(symbol)]

    def cancel_open_orders(self, params: Params) -> list:
        orders = self.engine.cancel_all(required(params, "symbol"))
        return [cancel_json(order, f"sim-cancel-{order.order_id}") for order in orders]

    def all_orders(self, params: Params) -> list:
        symbol = required(params, "symbol")
        from_id = int_param(params, "orderId")
        start = int_param(params, "startTime")
        end = int_param(params, "endTime")
        limit = limit_param(params, 500, 1000)
        orders = [o for o in self.engine.orders(symbol)
                  if (from_id is None or o.order_id >= from_id)
                  and (start is None or o.time >= start) and (end is None or o.time <= end)]
        orders = orders[:limit] if from_id is not None or start is not None else orders[-limit:]
        return [order_json(order) for order in orders]

    def my_trades(self, params: Params) -> list:
        trades = self.engine.trades(
            required(params, "symbol"), order_id=int_param(params, "orderId"),
            from_id=int_param(params, "fromId"), start_time=int_param(params, "startTime"),
            end_time=int_param(params, "endTime"), limit=limit_param(params, 500, 1000))
        return [trade_json(trade) for trade in trades]

    # helpers -----------------------------------------------------------------

    def _order_args(self, params: Params) -> tuple:
        spec = self.engine.spec(required(params, "symbol"))
        side = required(params, "side")
        order_type = required(params, "type")
        tif = params.get("timeInForce", "")
        if order_type == LIMIT and tif == "":
            raise errors.mandatory("timeInForce")
        if order_type == LIMIT and tif != "GTC":
            raise SimError(errors.INVALID_TIF, "Invalid timeInForce.")
        if order_type == LIMIT_MAKER and tif:
            raise SimError(errors.PARAM_NOT_REQUIRED,
                           "Parameter 'timeInForce' sent when not required.")
        if order_type not in (LIMIT, LIMIT_MAKER):
            raise SimError(errors.INVALID_ORDER_TYPE, "Invalid orderType.")
        quantity = decimal_param(params, "quantity")
        price = decimal_param(params, "price")
        client_id = params.get("newClientOrderId") or None
        return spec.market_id, side, order_type, quantity, price, client_id

    def _order_ref(self, params: Params) -> tuple[str, int | None, str | None]:
        symbol = required(params, "symbol")
        return symbol, int_param(params, "orderId"), params.get("origClientOrderId") or None

    def _symbols_filter(self, params: Params) -> list[str] | None:
        if params.get("symbol"):
            return [params["symbol"]]
        if params.get("symbols"):
            try:
                symbols = json.loads(params["symbols"])
            except ValueError:
                raise errors.illegal("symbols", '^\\["[A-Z0-9-_.]+"(,"[A-Z0-9-_.]+"){0,}\\]$') from None
            if not isinstance(symbols, list) or not all(isinstance(s, str) for s in symbols):
                raise errors.illegal("symbols", '^\\["[A-Z0-9-_.]+"(,"[A-Z0-9-_.]+"){0,}\\]$')
            return symbols
        return None

    def _per_symbol(self, params: Params, build: Callable[[MarketSpec], dict]) -> dict | list:
        if params.get("symbol"):
            return build(self.engine.spec(params["symbol"]))
        wanted = self._symbols_filter(params)
        specs = self.engine.specs() if wanted is None else [self.engine.spec(s) for s in wanted]
        return [build(spec) for spec in specs]


ROUTES: dict[tuple[str, str], Endpoint[BinanceApi]] = {
    ("GET", "/api/v3/ping"): Endpoint(BinanceApi.ping, 1, False),
    ("GET", "/api/v3/time"): Endpoint(BinanceApi.server_time, 1, False),
    ("GET", "/api/v3/exchangeInfo"): Endpoint(BinanceApi.exchange_info, 20, False),
    ("GET", "/api/v3/ticker/24hr"): Endpoint(BinanceApi.ticker_24hr, tickers_weight, False),
    ("GET", "/api/v3/ticker/price"): Endpoint(BinanceApi.ticker_price, symbol_weight(2, 4), False),
    ("GET", "/api/v3/ticker/bookTicker"): Endpoint(BinanceApi.book_ticker, symbol_weight(2, 4),
                                                   False),
    ("GET", "/api/v3/depth"): Endpoint(BinanceApi.depth, depth_weight, False),
    ("GET", "/api/v3/klines"): Endpoint(BinanceApi.klines, 2, False),
    ("GET", "/api/v3/account"): Endpoint(BinanceApi.account, 20, True),
    ("POST", "/api/v3/order"): Endpoint(BinanceApi.new_order, 1, True),
    ("POST", "/api/v3/order/test"): Endpoint(BinanceApi.test_order, 1, True),
    ("GET", "/api/v3/order"): Endpoint(BinanceApi.get_order, 4, True),
    ("DELETE", "/api/v3/order"): Endpoint(BinanceApi.cancel_order, 1, True),
    ("GET", "/api/v3/openOrders"): Endpoint(BinanceApi.open_orders, symbol_weight(6, 80), True),
    ("DELETE", "/api/v3/openOrders"): Endpoint(BinanceApi.cancel_open_orders, 1, True),
    ("GET", "/api/v3/allOrders"): Endpoint(BinanceApi.all_orders, 20, True),
    ("GET", "/api/v3/myTrades"): Endpoint(BinanceApi.my_trades, 20, True),
}

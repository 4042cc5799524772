"""What the exchange layer needs from an exchange beyond ccxt's unified API, and how each
exchange QuantMesh trades on provides it: its dialect, chosen by ccxt exchange id.

The order path relies on capabilities ccxt does not unify:

- idempotent lookup by client order id: after an ambiguous create, the order is looked up (and
  canceled) by the client order id it was sent with, so it is resolved without being resent;
- a pinned request timestamp: an order request carries the timestamp recorded before it was
  sent, and the exchange refuses it once that timestamp is older than its receive window, so a
  delayed or retried request cannot execute after the ledger has given it up;
- request weights and limits: the account's request budget charges each request what the
  exchange charges and reads the count the exchange reports back.

An exchange without a dialect of its own gets `GenericDialect`, which refuses when a client,
gateway or session is built for it, naming the exchange and what it cannot honour. A dialect
serves one ccxt exchange id and one market type; ccxt gives Binance USDⓈ-M futures an id of its
own (`binanceusdm`), so a dialect for it is one more entry in `DIALECTS`.
"""
from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, NoReturn

from trading.exchange import errors

CLIENT_ID_LOOKUP = "idempotent order lookup by client order id"
PINNED_TIMESTAMP = "a pinned request timestamp refused outside the exchange's receive window"
REQUEST_WEIGHTS = "the exchange's request weights and limits for the account's request budget"
REQUIRED = (CLIENT_ID_LOOKUP, PINNED_TIMESTAMP, REQUEST_WEIGHTS)

# ccxt unified order statuses -> ledger statuses.
_UNIFIED_STATUS = {"open": "open", "closed": "filled", "canceled": "canceled", "rejected": "rejected", "expired": "expired"}


@dataclass(frozen=True)
class Limits:
    """An account's rate limits: request weight per calendar minute, new orders per 10 seconds
    and per longer window (`orders_per_day` per `long_window_s`: a UTC day on spot, a minute on
    USDⓈ-M futures)."""

    weight_per_minute: int
    orders_per_10s: int
    orders_per_day: int
    long_window_s: int = 86_400


class Dialect:
    """How the gateway speaks to one exchange where ccxt leaves it to the exchange. The base
    reads only ccxt's unified fields and has none of the `REQUIRED` capabilities: what needs one
    refuses with `UnsupportedExchange`."""

    exchange_id: str = ""
    name: str = ""
    market_type = "spot"  # the ccxt market type traded: markets of other types are not listed
    capabilities: frozenset[str] = frozenset()
    streams = False  # the exchange's own WebSocket URLs serve the account's streams
    weights: Mapping[str, int] = {}  # request weight of each gateway method
    weight_per_polling_second = 0  # read weight one polling symbol loop spends per second
    limits: Limits | None = None  # the account's limits until the exchange announces its own
    used_weight_header = ""  # reply header with the weight the exchange has counted
    too_many_orders_code: int | None = None  # the error code of a 429 for the order limits
    duplicate_markers: tuple[str, ...] = ()  # texts of a refusal for a client order id already used
    futures = False  # trades perpetual futures: positions, leverage, margin and funding
    maker_fee = Decimal("0.001")  # the account's maker fee before any discount, for the grid's fee check
    trade_window_ms = 0  # the longest time range the trade history answers at once (0: any)
    # Exchange error code -> the gateway error it means, where ccxt's class says less.
    error_codes: Mapping[int, type[errors.ExchangeFailure]] = {}

    def ccxt_symbol(self, symbol: str) -> str:
        """ccxt's symbol for one of ours ("BTC/USDT")."""
        return symbol

    def our_symbol(self, ccxt_symbol: str) -> str:
        return ccxt_symbol

    def missing(self) -> list[str]:
        return [need for need in REQUIRED if need not in self.capabilities]

    def require(self) -> Dialect:
        """This dialect, or UnsupportedExchange naming the capabilities it lacks."""
        missing = self.missing()
        if missing:
            raise errors.UnsupportedExchange(
                f"QuantMesh has no dialect for ccxt exchange {self.exchange_id!r}, so it cannot trade there: "
                f"it cannot honour {'; '.join(missing)}"
            )
        return self

    def _refuse(self, what: str) -> NoReturn:
        raise errors.UnsupportedExchange(f"QuantMesh cannot trade on ccxt exchange {self.exchange_id!r}: no {what}")

    # --- the ccxt client --------------------------------------------------------------------------
    def market_options(self) -> dict[str, Any]:
        """ccxt options that keep a client to `market_type`."""
        return {"defaultType": self.market_type}

    def ccxt_options(self, recv_window_ms: int | None = None) -> dict[str, Any]:
        """Every ccxt option the gateway's clients are built with."""
        return self.market_options()

    def point_at(self, exchange, base_url: str, ws_url: str | None = None) -> None:
        """Send every request of `exchange` to a compatible server at `base_url` (streams at `ws_url`)."""
        self._refuse("compatible server to point a client at")

    def recv_window_ms(self, exchange) -> int:
        """How long after its timestamp a signed request may still execute at the exchange."""
        self._refuse(PINNED_TIMESTAMP)

    def user_stream_url(self, exchange) -> str:
        """The ccxt.pro client URL of the account's user-data stream."""
        self._refuse("user-data stream")

    def forget_user_stream(self, exchange) -> None:
        """After the user-data stream ended: make the next subscription start it afresh."""

    def trades(self, market: dict) -> bool:
        """Whether the gateway lists this ccxt market."""
        return bool(market.get(self.market_type, True))

    # --- orders -----------------------------------------------------------------------------------
    def new_order_params(self, client_order_id: str) -> dict[str, Any]:
        """Parameters that make a new order carry our client order id."""
        self._refuse(CLIENT_ID_LOOKUP)

    def client_id_params(self, client_order_id: str) -> dict[str, Any]:
        """Parameters that name an existing order by our client order id (query and cancel)."""
        self._refuse(CLIENT_ID_LOOKUP)

    @contextmanager
    def signed_at(self, exchange, signed_at_ms: int | None) -> Iterator[None]:
        """While inside, the requests of `exchange` carry the timestamp `signed_at_ms` (None: now)."""
        self._refuse(PINNED_TIMESTAMP)
        yield

    def order_client_id(self, raw: dict) -> str:
        """The client order id of the order in a ccxt order reply ("" when it has none)."""
        return raw.get("clientOrderId") or ""

    def order_status(self, raw: dict, filled) -> str:
        """The ledger status of a ccxt order reply."""
        status = _UNIFIED_STATUS.get(raw.get("status") or "", "open")
        return "partially_filled" if status == "open" and filled > 0 else status

    # --- the request budget -----------------------------------------------------------------------
    def announced_limits(self, url: str, body: str) -> Limits | None:
        """The account's limits when this successful reply announces them, else None; ValueError
        when it should and cannot be read."""
        return None


class GenericDialect(Dialect):
    """Any ccxt exchange QuantMesh has no dialect for: it refuses."""

    def __init__(self, exchange_id: str):
        self.exchange_id = exchange_id
        self.name = exchange_id


# Binance spot order statuses -> ledger statuses.
_BINANCE_STATUS = {
    "NEW": "open",
    "PARTIALLY_FILLED": "partially_filled",
    "FILLED": "filled",
    "CANCELED": "canceled",
    "PENDING_CANCEL": "open",
    "REJECTED": "rejected",
    "EXPIRED": "expired",
    "EXPIRED_IN_MATCH": "expired",
}


class BinanceSpot(Dialect):
    """Binance spot (REST v3, the WebSocket API for user data) through ccxt's `binance`."""

    exchange_id = "binance"
    name = "Binance spot"
    market_type = "spot"
    capabilities = frozenset(REQUIRED)
    streams = True
    # Request weight of each gateway method on Binance spot. An accepted order or cancel costs no
    # weight there; 1 is charged here, before its reply is known.
    weights = {
        "load_markets": 20, "fetch_ticker": 2, "fetch_balance": 20, "fetch_open_orders": 6, "fetch_my_trades": 20,
        "fetch_order": 4, "create_order": 1, "cancel_order": 1, "fetch_ohlcv": 2,
    }
    # What one symbol's loop spends on reads per second of ticking at 1 s: 8 per tick (open orders 6,
    # ticker 2), its trades sync (20 every 30 s) and its reconcile pass (46 every 60 s).
    weight_per_polling_second = 10
    limits = Limits(weight_per_minute=6000, orders_per_10s=100, orders_per_day=200_000)
    used_weight_header = "x-mbx-used-weight-1m"
    too_many_orders_code = -1015
    # ccxt maps Binance's refusal of a client order id already in use to plain InvalidOrder.
    duplicate_markers = ("Duplicate order sent",)
    # The `recvWindow` sent with every signed request unless the client is built with another.
    default_recv_window_ms = 5000

    def market_options(self) -> dict[str, Any]:
        """ccxt options that keep a client to spot: no currency, margin or derivatives requests."""
        return {
            "defaultType": "spot",
            "fetchCurrencies": False,
            "fetchMargins": False,
            "fetchMarkets": {"types": ["spot"]},
        }

    def ccxt_options(self, recv_window_ms: int | None = None) -> dict[str, Any]:
        return {
            **self.market_options(),
            "warnOnFetchOpenOrdersWithoutSymbol": False,
            "recvWindow": recv_window_ms or self.default_recv_window_ms,
            "watchTickers": {"name": "ticker"},  # with bid and ask (miniTicker has neither)
        }

    def point_at(self, exchange, base_url: str, ws_url: str | None = None) -> None:
        """Only the spot sections are kept, so a sapi, fapi or dapi call fails locally with
        ccxt.NotSupported and nothing can leave for a real Binance host."""
        base = base_url.rstrip("/")
        exchange.urls["api"] = {"public": f"{base}/api/v3", "private": f"{base}/api/v3", "v1": f"{base}/api/v1"}
        if ws_url:
            exchange.urls["api"]["ws"] = {"spot": f"{ws_url}/ws", "ws-api": {"spot": f"{ws_url}/ws-api/v3"}}
        spot = exchange.exceptions.get("spot") if isinstance(exchange.exceptions, dict) else None
        if spot:
            # ccxt picks Binance's spot error table by URL prefix; a local URL would lose it.
            exchange.exceptions["exact"] = {**exchange.exceptions["exact"], **spot.get("exact", {})}
            exchange.exceptions["broad"] = {**exchange.exceptions["broad"], **spot.get("broad", {})}

    def recv_window_ms(self, exchange) -> int:
        options = getattr(exchange, "options", None) or {}
        return int(options.get("recvWindow") or self.default_recv_window_ms)

    def user_stream_url(self, exchange) -> str:
        return exchange.urls["api"]["ws"]["ws-api"]["spot"]

    def new_order_params(self, client_order_id: str) -> dict[str, Any]:
        return {"newClientOrderId": client_order_id, "clientOrderId": client_order_id}

    def client_id_params(self, client_order_id: str) -> dict[str, Any]:
        return {"origClientOrderId": client_order_id, "clientOrderId": client_order_id}

    @contextmanager
    def signed_at(self, exchange, signed_at_ms: int | None) -> Iterator[None]:
        # ccxt's binance.sign() takes each signed request's `timestamp` from nonce(); an instance
        # attribute shadows the method for the requests made inside.
        if signed_at_ms is not None:
            exchange.nonce = lambda: signed_at_ms
        try:
            yield
        finally:
            exchange.__dict__.pop("nonce", None)

    def order_client_id(self, raw: dict) -> str:
        # A cancel reply carries the cancel request's own id in clientOrderId; the order's is origClientOrderId.
        info = raw.get("info") or {}
        return info.get("origClientOrderId") or raw.get("clientOrderId") or info.get("clientOrderId") or ""

    def order_status(self, raw: dict, filled) -> str:
        status = _BINANCE_STATUS.get(str((raw.get("info") or {}).get("status", "")).upper())
        return status if status is not None else super().order_status(raw, filled)

    def announced_limits(self, url: str, body: str) -> Limits | None:
        """exchangeInfo's `rateLimits`; a limit it does not give stays at Binance spot's."""
        if "/exchangeInfo" not in url:
            return None
        try:
            rate_limits = json.loads(body).get("rateLimits")
            weight, per_10s, per_day = self.limits.weight_per_minute, self.limits.orders_per_10s, self.limits.orders_per_day
            for item in rate_limits or []:
                kind, interval, num, limit = (item.get("rateLimitType"), item.get("interval"),
                                              int(item.get("intervalNum") or 1), int(item.get("limit") or 0))
                if limit <= 0:
                    continue
                if kind == "REQUEST_WEIGHT" and interval == "MINUTE" and num == 1:
                    weight = limit
                elif kind == "ORDERS" and interval == "SECOND" and num == 10:
                    per_10s = limit
                elif kind == "ORDERS" and num == 1 and _WINDOW_S.get(interval) == self.limits.long_window_s:
                    per_day = limit
        except (ValueError, AttributeError, TypeError) as exc:
            raise ValueError(f"exchangeInfo has no readable rateLimits: {exc}") from None
        return Limits(weight, per_10s, per_day, self.limits.long_window_s)


_WINDOW_S = {"MINUTE": 60, "HOUR": 3600, "DAY": 86_400}


class BinanceUsdm(BinanceSpot):
    """Binance USDⓈ-M perpetual futures (fapi) through ccxt's `binanceusdm`, in one-way mode.

    Our symbols stay "BTC/USDT"; ccxt's are "BTC/USDT:USDT". Against a local URL ccxt would lose
    the linear error table it picks by the fapi host's prefix, so `point_at` restores it, and the
    futures codes whose ccxt class says too little are classified by code. User data comes from
    a listen-key stream (ccxt.pro asks for the key and keeps it alive)."""

    exchange_id = "binanceusdm"
    name = "Binance USDⓈ-M futures"
    market_type = "swap"
    futures = True
    maker_fee = Decimal("0.0002")
    streams = True
    trade_window_ms = 7 * 86_400_000  # userTrades answers at most 7 days per request
    # Binance's fapi weights. Accepted orders cost no IP weight (they count against ORDERS); 1 is
    # charged here before the reply is known, as on spot.
    weights = {
        "load_markets": 1, "fetch_ticker": 1, "fetch_balance": 5, "fetch_open_orders": 1, "fetch_my_trades": 5,
        "fetch_order": 1, "create_order": 1, "cancel_order": 1, "fetch_ohlcv": 2, "fetch_positions": 5,
        "fetch_leverages": 5, "set_leverage": 1, "set_margin_mode": 1, "fetch_position_mode": 30,
        "fetch_funding_history": 30, "fetch_mark_price": 1, "fetch_leverage_tiers": 1,
    }
    # Per tick of a polling symbol loop: open orders 1, ticker 1; trades (5 every 30 s), a reconcile
    # pass (about 50 every 60 s: orders, trades, position, account, funding).
    weight_per_polling_second = 3
    limits = Limits(weight_per_minute=2400, orders_per_10s=300, orders_per_day=1200, long_window_s=60)
    duplicate_markers = ("clientOrderId is duplicated",)
    error_codes = {
        -5022: errors.PostOnlyWouldTake,  # GTX would take: refused and not recorded
        -4116: errors.DuplicateClientOrderId,
        -2022: errors.ReduceOnlyRejected,
        -4118: errors.ReduceOnlyRejected,
        -2019: errors.InsufficientFunds,  # margin is insufficient
        -2018: errors.InsufficientFunds,
        -2027: errors.InsufficientFunds,  # above the position allowed at this leverage
        -2028: errors.InsufficientFunds,
        -4061: errors.PositionModeMismatch,
        -4164: errors.Rejected,  # below the minimum notional
    }
    _SECTIONS = {"fapiPublic": "/fapi/v1", "fapiPublicV2": "/fapi/v2", "fapiPublicV3": "/fapi/v3",
                 "fapiPrivate": "/fapi/v1", "fapiPrivateV2": "/fapi/v2", "fapiPrivateV3": "/fapi/v3"}

    def market_options(self) -> dict[str, Any]:
        """ccxt options that keep a client to linear perpetuals: no currency, margin or spot requests."""
        return {"defaultType": "swap", "defaultSubType": "linear", "fetchCurrencies": False, "fetchMargins": False,
                "fetchMarkets": {"types": ["linear"]}}

    def ccxt_options(self, recv_window_ms: int | None = None) -> dict[str, Any]:
        return {**super().ccxt_options(recv_window_ms), **self.market_options()}

    def point_at(self, exchange, base_url: str, ws_url: str | None = None) -> None:
        """Only the fapi sections are kept, so any other call fails locally with ccxt.NotSupported."""
        base = base_url.rstrip("/")
        exchange.urls["api"] = {section: base + path for section, path in self._SECTIONS.items()}
        if ws_url:
            # ccxt.pro derives market (/market/ws) and user (/private/ws) URLs from this base.
            exchange.urls["api"]["ws"] = {"linear": f"{ws_url}/fstream/ws"}
        linear = exchange.exceptions.get("linear") if isinstance(exchange.exceptions, dict) else None
        if linear:
            exchange.exceptions["exact"] = {**exchange.exceptions["exact"], **linear.get("exact", {})}
            exchange.exceptions["broad"] = {**exchange.exceptions["broad"], **linear.get("broad", {})}

    def user_stream_url(self, exchange) -> str:
        """The listen-key stream's URL; "" before ccxt.pro has a key."""
        key = ((exchange.options or {}).get("linear") or {}).get("listenKey")
        return exchange.get_private_ws_url("linear", key) if key else ""

    def forget_user_stream(self, exchange) -> None:
        # ccxt.pro reuses its listen key for 20 minutes even when the stream on it ended (the key
        # expired or was closed): the next subscription asks for a key again.
        options = exchange.options.get("linear")
        if isinstance(options, dict):
            options["lastAuthenticatedTime"] = 0

    def trades(self, market: dict) -> bool:
        return bool(market.get("swap") and market.get("linear"))

    def ccxt_symbol(self, symbol: str) -> str:
        if ":" in symbol:
            return symbol
        return f"{symbol}:{symbol.split('/')[1]}"

    def our_symbol(self, ccxt_symbol: str) -> str:
        return ccxt_symbol.split(":")[0]


BINANCE_SPOT = BinanceSpot()
BINANCE_USDM = BinanceUsdm()

# ccxt exchange id -> its dialect.
DIALECTS: dict[str, Dialect] = {BINANCE_SPOT.exchange_id: BINANCE_SPOT, BINANCE_USDM.exchange_id: BINANCE_USDM}

# (exchange, market type) of an account -> the ccxt exchange id that trades it.
CCXT_IDS = {("binance", "usdm"): "binanceusdm"}


def ccxt_id(exchange_id: str, market_type: str = "spot") -> str:
    """The ccxt exchange id for an account on `exchange_id` trading `market_type` (spot or usdm);
    UnsupportedExchange when QuantMesh cannot trade that market there."""
    if market_type == "spot":
        return exchange_id
    try:
        return CCXT_IDS[(exchange_id, market_type)]
    except KeyError:
        raise errors.UnsupportedExchange(f"QuantMesh trades {market_type} futures on binance only, not on {exchange_id!r}") from None


def dialect_for(exchange_id: str) -> Dialect:
    """The dialect of ccxt exchange `exchange_id`; UnsupportedExchange, naming what is missing,
    when QuantMesh has none that can trade there."""
    return (DIALECTS.get(exchange_id) or GenericDialect(exchange_id)).require()

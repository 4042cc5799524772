"""The only door to an exchange: one class over a ccxt exchange instance.

It speaks Decimals and the dataclasses of `trading.exchange.types`, and turns every ccxt
failure into one of the classes of `trading.exchange.errors`. What ccxt leaves to each exchange
(client order ids, the pinned request timestamp, native order statuses, request weights) comes
from the exchange's dialect (`trading.exchange.dialects`): a client or gateway for an exchange
without one is refused when it is built. Paper trading uses the same code pointed at the
simulator's URL, so paper and live differ only in a base URL and keys.
"""
from __future__ import annotations

import logging
import time
from decimal import Decimal, InvalidOperation
from typing import Any, Callable

import ccxt

from trading.exchange import errors
from trading.exchange.dialects import dialect_for
from trading.exchange.types import Balance, ExchangeOrder, ListedMarket, Ticker, Trade

log = logging.getLogger("quantmesh.exchange")


def dec(value: Any, *, field: str = "value") -> Decimal:
    """An exact Decimal from what ccxt returns (strings, ints or floats parsed from strings)."""
    if value is None:
        raise errors.MalformedReply(f"exchange reply has no {field}")
    try:
        return value if isinstance(value, Decimal) else Decimal(str(value))
    except InvalidOperation:
        raise errors.MalformedReply(f"exchange reply has a non-numeric {field}: {value!r}") from None


def dec_or_none(value: Any) -> Decimal | None:
    return None if value is None or value == "" else dec(value)


def build_exchange(
    exchange_id: str,
    *,
    api_key: str = "",
    secret: str = "",
    base_url: str | None = None,
    timeout_ms: int = 5000,
    recv_window_ms: int | None = None,
    pro: bool = False,
    ws_url: str | None = None,
) -> ccxt.Exchange:
    """A ccxt exchange instance (`pro`: the ccxt.pro one, with WebSocket streams), configured by
    the exchange's dialect; UnsupportedExchange when it has none. With `base_url` (the simulator,
    or any server compatible with the exchange) every request goes there, with the streams at
    `ws_url`, so nothing can leave for a real host by accident. `recv_window_ms`: how long a
    signed request may execute after its timestamp (None: the dialect's default)."""
    module = ccxt
    if pro:
        from ccxt import pro as module
    try:
        klass = getattr(module, exchange_id)
    except AttributeError:
        raise errors.Rejected(f"{exchange_id!r} is not a ccxt{'.pro' if pro else ''} exchange id") from None
    dialect = dialect_for(exchange_id)
    exchange = klass(
        {
            "apiKey": api_key,
            "secret": secret,
            "enableRateLimit": base_url is None,
            "timeout": timeout_ms,
            "options": dialect.ccxt_options(recv_window_ms),
        }
    )
    exchange.number = str  # parse numbers as strings, so Decimals are exact
    if base_url:
        dialect.point_at(exchange, base_url, ws_url)
    return exchange


class ExchangeGateway:
    """Typed, exact, classified access to one exchange account. Not thread-safe: one per thread.

    With a `budget` (`trading.exchange.session.RequestBudget`, shared by the account's gateways),
    every request is first admitted by it (or refused with RateLimited, unsent), and every reply
    is shown to it. Refuses (UnsupportedExchange) an exchange without a dialect."""

    def __init__(self, exchange: ccxt.Exchange, *, budget=None, markets=None):
        self.dialect = dialect_for(exchange.id)
        self.exchange = exchange
        self.budget = budget
        self.markets = markets  # the account's markets, shared by its gateways (a MarketsCache)
        self._rules: dict[str, ListedMarket] = {}
        # A request signed at T cannot execute after T + recv_window_ms, which bounds how long an
        # ambiguous create can still turn into a live order.
        self.recv_window_ms = self.dialect.recv_window_ms(exchange)
        if budget is not None:
            exchange.on_rest_response = self._on_response  # ccxt calls it with every HTTP reply

    def _on_response(self, code, reason, url, method, headers, body, request_headers, request_body):
        self.budget.after(int(code or 0), headers, body or "")
        if code == 200:
            try:
                limits = self.dialect.announced_limits(url, body)
            except ValueError as exc:
                log.warning("%s: %s; keeping %s", self.exchange.id, exc, self.budget.limits)
            else:
                if limits is not None:
                    self.budget.set_limits(limits)
        return body

    def take_order_slot(self) -> float:
        """Ask the account's order budget for one new order: 0 when granted, else seconds to wait."""
        return 0.0 if self.budget is None else self.budget.take_order()

    # --- markets ---------------------------------------------------------------------------
    def load_markets(self, reload: bool = False) -> dict[str, ListedMarket]:
        if self.markets is not None and not reload:
            def fetch():
                loaded = self._call("load_markets", lambda: self.exchange.load_markets())
                return list(loaded.values()), self.exchange.currencies

            markets, currencies = self.markets.get_or_load(fetch)
            if not self.exchange.markets:
                self.adopt_markets(markets, currencies)
            else:
                self._rules = {m["symbol"]: self._listing(m) for m in markets if self.dialect.trades(m)}
            return dict(self._rules)
        markets = self._call("load_markets", lambda: self.exchange.load_markets(reload))
        self._rules = {symbol: self._listing(m) for symbol, m in markets.items() if self.dialect.trades(m)}
        return dict(self._rules)

    def adopt_markets(self, markets: list, currencies=None) -> None:
        """Use markets another gateway of the account loaded (no request)."""
        self.exchange.set_markets(markets, currencies)
        self._rules = {m["symbol"]: self._listing(m) for m in markets if self.dialect.trades(m)}

    def market_rules(self, symbol: str) -> ListedMarket:
        """How the exchange lists `symbol` (its filters are the grid's market rules); Rejected
        when it does not."""
        if not self._rules:
            self.load_markets()
        try:
            return self._rules[symbol]
        except KeyError:
            raise errors.Rejected(f"{self.exchange.id} does not list {symbol}") from None

    @staticmethod
    def _listing(market: dict) -> ListedMarket:
        precision, limits = market.get("precision") or {}, market.get("limits") or {}
        tick, step = dec_or_none(precision.get("price")), dec_or_none(precision.get("amount"))
        if tick is None or step is None:
            raise errors.MalformedReply(f"market {market.get('symbol')} has no price or amount precision")
        return ListedMarket(
            symbol=market["symbol"],
            market_id=market["id"],
            base=market["base"],
            quote=market["quote"],
            tick_size=tick,
            step_size=step,
            min_amount=dec_or_none((limits.get("amount") or {}).get("min")) or Decimal(0),
            min_notional=dec_or_none((limits.get("cost") or {}).get("min")) or Decimal(0),
            active=market.get("active") is not False,
        )

    # --- market data -----------------------------------------------------------------------
    def fetch_ticker(self, symbol: str) -> Ticker:
        raw = self._call("fetch_ticker", lambda: self.exchange.fetch_ticker(symbol))
        last = raw.get("last") or raw.get("close")
        return Ticker(
            symbol=symbol,
            bid=dec_or_none(raw.get("bid")),
            ask=dec_or_none(raw.get("ask")),
            last=dec(last, field="last price"),
            timestamp_ms=raw.get("timestamp"),
        )

    def fetch_balances(self) -> dict[str, Balance]:
        raw = self._call("fetch_balance", self.exchange.fetch_balance)
        free, used = raw.get("free") or {}, raw.get("used") or {}
        return {
            asset: Balance(asset, dec(free.get(asset) or 0), dec(used.get(asset) or 0))
            for asset in set(free) | set(used)
        }

    # --- orders ----------------------------------------------------------------------------
    def create_limit_order(
        self,
        *,
        symbol: str,
        side: str,
        amount: Decimal,
        price: Decimal,
        client_order_id: str,
        post_only: bool,
        signed_at_ms: int | None = None,
    ) -> ExchangeOrder:
        """Send one GTC limit (or post-only) order carrying our client id. Raises a
        `Rejected` kind, `RateLimited`, or `Ambiguous` (resolve with `fetch_order_by_client_id`).

        `signed_at_ms` pins the request's timestamp: the caller records it before sending, so a
        process paused before the send cannot have its request executed later than
        `signed_at_ms + recv_window_ms` (the exchange refuses it)."""
        if side not in ("buy", "sell"):
            raise ValueError(f"side must be buy or sell, not {side!r}")
        params = self.dialect.new_order_params(client_order_id)
        if post_only:
            params["postOnly"] = True
        with self.dialect.signed_at(self.exchange, signed_at_ms):
            raw = self._call(
                "create_order",
                lambda: self.exchange.create_order(symbol, "limit", side, str(amount), str(price), params),
                write=True,
            )
        order = self._order(raw, symbol=symbol, expect_client_id=client_order_id)
        log.info("order %s accepted: %s %s %s @ %s id=%s", client_order_id, side, amount, symbol, price, order.exchange_order_id)
        return order

    def fetch_order_by_client_id(self, symbol: str, client_order_id: str) -> ExchangeOrder | None:
        """The order with this client id, or None when the exchange has none."""
        try:
            raw = self._call(
                "fetch_order",
                lambda: self.exchange.fetch_order(None, symbol, self.dialect.client_id_params(client_order_id)),
            )
        except errors.OrderNotFound:
            return None
        return self._order(raw, symbol=symbol, expect_client_id=client_order_id)

    def fetch_order(self, symbol: str, exchange_order_id: str) -> ExchangeOrder:
        raw = self._call("fetch_order", lambda: self.exchange.fetch_order(exchange_order_id, symbol))
        return self._order(raw, symbol=symbol)

    def fetch_open_orders(self, symbol: str) -> list[ExchangeOrder]:
        raw = self._call("fetch_open_orders", lambda: self.exchange.fetch_open_orders(symbol))
        return [self._order(item, symbol=symbol) for item in raw]

    def cancel_order(self, symbol: str, *, exchange_order_id: str | None = None, client_order_id: str | None = None) -> ExchangeOrder | None:
        """Cancel by exchange id or client id. Returns the canceled order, or None when the
        exchange no longer knows it as open (already filled, canceled or never placed): the
        caller queries to learn which."""
        if not exchange_order_id and not client_order_id:
            raise ValueError("cancel_order needs an exchange order id or a client order id")
        params = {} if exchange_order_id else self.dialect.client_id_params(client_order_id)
        try:
            raw = self._call("cancel_order", lambda: self.exchange.cancel_order(exchange_order_id, symbol, params), write=True)
        except errors.OrderNotFound:
            return None
        return self._order(raw, symbol=symbol)

    def fetch_my_trades(self, symbol: str, *, since_ms: int | None = None, limit: int | None = 1000) -> list[Trade]:
        raw = self._call("fetch_my_trades", lambda: self.exchange.fetch_my_trades(symbol, since_ms, limit))
        return [self._trade(item, symbol) for item in raw]

    def fetch_ohlcv(self, symbol: str, timeframe: str = "1m", limit: int = 100) -> list[tuple[int, Decimal, Decimal, Decimal, Decimal, Decimal]]:
        raw = self._call("fetch_ohlcv", lambda: self.exchange.fetch_ohlcv(symbol, timeframe, None, limit))
        return [(int(r[0]), dec(r[1]), dec(r[2]), dec(r[3]), dec(r[4]), dec(r[5])) for r in raw]

    # --- parsing ---------------------------------------------------------------------------
    def _order(self, raw: dict, *, symbol: str, expect_client_id: str | None = None) -> ExchangeOrder:
        if not isinstance(raw, dict) or raw.get("id") in (None, ""):
            raise errors.MalformedReply(f"exchange returned an order without an id for {expect_client_id or symbol}")
        client_id = self.dialect.order_client_id(raw)
        if expect_client_id and client_id and client_id != expect_client_id:
            raise errors.MalformedReply(f"exchange answered order {client_id!r} for {expect_client_id!r}")
        amount = dec(raw.get("amount"), field="amount")
        filled = dec(raw.get("filled") or 0, field="filled")
        status = self.dialect.order_status(raw, filled)
        side = (raw.get("side") or "").lower()
        if side not in ("buy", "sell"):
            raise errors.MalformedReply(f"order {raw.get('id')} has side {raw.get('side')!r}")
        return ExchangeOrder(
            symbol=raw.get("symbol") or symbol,
            exchange_order_id=str(raw["id"]),
            client_order_id=client_id or (expect_client_id or ""),
            side=side,
            price=dec(raw.get("price"), field="price"),
            amount=amount,
            filled=filled,
            average_price=dec_or_none(raw.get("average")),
            status=status,
            post_only=bool(raw.get("postOnly")),
            timestamp_ms=raw.get("timestamp"),
        )

    def parse_trade(self, raw: dict, symbol: str) -> Trade:
        """A ccxt trade (from REST or a stream) as the gateway's Trade."""
        return self._trade(raw, symbol)

    def _trade(self, raw: dict, symbol: str) -> Trade:
        if raw.get("id") in (None, "") or raw.get("order") in (None, ""):
            raise errors.MalformedReply(f"trade without an id or order id on {symbol}")
        fee = raw.get("fee") or {}
        maker = raw.get("takerOrMaker")
        return Trade(
            symbol=raw.get("symbol") or symbol,
            trade_id=str(raw["id"]),
            exchange_order_id=str(raw["order"]),
            side=str(raw.get("side")).lower(),
            price=dec(raw.get("price"), field="trade price"),
            amount=dec(raw.get("amount"), field="trade amount"),
            fee=dec(fee.get("cost") or 0),
            fee_currency=fee.get("currency") or "",
            is_maker=None if maker is None else maker == "maker",
            timestamp_ms=int(raw.get("timestamp") or 0),
        )

    # --- error classification --------------------------------------------------------------
    def _call(self, method: str, fn: Callable[[], Any], *, write: bool = False) -> Any:
        if method != "load_markets" and not self.exchange.markets:
            self.load_markets()  # here, not inside ccxt: charged, and shared with the account's gateways
        if self.budget is not None:
            self.budget.before(method, write=write)  # RateLimited, unsent, when it may not go
        started = time.perf_counter()
        error = None
        try:
            return fn()
        except ccxt.BaseError as exc:
            classified = self.classify(exc)
            error = type(classified).__name__
            raise classified from exc
        finally:
            observe = _observer
            if observe is not None:
                observe(self.exchange.id, method, time.perf_counter() - started, error)

    def classify(self, exc: Exception) -> errors.ExchangeFailure:
        text = str(exc)
        if isinstance(exc, (ccxt.DDoSProtection, ccxt.RateLimitExceeded)):
            return errors.RateLimited(text, self._retry_after())
        if isinstance(exc, ccxt.InsufficientFunds):
            return errors.InsufficientFunds(text)
        if isinstance(exc, ccxt.OrderImmediatelyFillable):
            return errors.PostOnlyWouldTake(text)
        if isinstance(exc, ccxt.OrderNotFound):
            return errors.OrderNotFound(text)
        if isinstance(exc, ccxt.DuplicateOrderId) or any(m in text for m in self.dialect.duplicate_markers):
            return errors.DuplicateClientOrderId(text)
        if isinstance(exc, ccxt.AuthenticationError):
            return errors.AuthenticationFailed(text)
        if isinstance(exc, ccxt.InvalidNonce):
            # Refused for its timestamp (outside the receive window): it did not execute.
            return errors.Rejected(text)
        if isinstance(exc, (ccxt.NetworkError, ccxt.OperationFailed)):
            # Timeouts (incl. -1007), 5xx, connection errors, -1000/-1001/-1006, bad responses.
            return errors.Ambiguous(text)
        if isinstance(exc, ccxt.ExchangeError):
            return errors.Rejected(text)
        return errors.Ambiguous(text)

    def _retry_after(self) -> float | None:
        headers = getattr(self.exchange, "last_response_headers", None) or {}
        for name, value in headers.items():
            if name.lower() == "retry-after":
                try:
                    return float(value)
                except (TypeError, ValueError):
                    return None
        return None


# Set by the metrics module: called with (exchange, method, seconds, error class name or None)
# after every request. None: nothing is recorded.
_observer: Callable[[str, str, float, str | None], None] | None = None


def set_request_observer(observer: Callable[[str, str, float, str | None], None] | None) -> None:
    global _observer
    _observer = observer

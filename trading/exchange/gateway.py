"""The only door to an exchange: one class over a ccxt exchange instance.

It speaks Decimals and the dataclasses of `trading.exchange.types`, and turns every ccxt
failure into one of the classes of `trading.exchange.errors`. What ccxt leaves to each exchange
(client order ids, the pinned request timestamp, native order statuses, request weights) comes
from the exchange's dialect (`trading.exchange.dialects`): a client or gateway for an exchange
without one is refused when it is built. Paper trading uses the same code pointed at the
simulator's URL, so paper and live differ only in a base URL and keys.
"""
from __future__ import annotations

import importlib
import logging
import re
import time
from decimal import Decimal, InvalidOperation
from functools import partial
from typing import Any, Callable

import ccxt

from trading.exchange import errors
from trading.exchange.dialects import dialect_for
from trading.exchange.types import (
    Balance,
    ExchangeOrder,
    FundingEvent,
    FuturesAccount,
    FuturesPosition,
    ListedMarket,
    Ticker,
    Trade,
)

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
    module: Any = importlib.import_module("ccxt.pro") if pro else ccxt
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
                self._rules = self._listings(markets)
            return dict(self._rules)
        markets = self._call("load_markets", lambda: self.exchange.load_markets(reload))
        self._rules = self._listings(markets.values())
        return dict(self._rules)

    def _listings(self, markets) -> dict[str, ListedMarket]:
        listed = (self._listing(m) for m in markets if self.dialect.trades(m))
        return {listing.symbol: listing for listing in listed}

    def adopt_markets(self, markets: list, currencies=None) -> None:
        """Use markets another gateway of the account loaded (no request)."""
        self.exchange.set_markets(markets, currencies)
        self._rules = self._listings(markets)

    def market_rules(self, symbol: str) -> ListedMarket:
        """How the exchange lists `symbol` (its filters are the grid's market rules); Rejected
        when it does not."""
        if not self._rules:
            self.load_markets()
        try:
            return self._rules[symbol]
        except KeyError:
            raise errors.Rejected(f"{self.exchange.id} does not list {symbol}") from None

    def _listing(self, market: dict) -> ListedMarket:
        precision, limits = market.get("precision") or {}, market.get("limits") or {}
        tick, step = dec_or_none(precision.get("price")), dec_or_none(precision.get("amount"))
        if tick is None or step is None:
            raise errors.MalformedReply(f"market {market.get('symbol')} has no price or amount precision")
        return ListedMarket(
            symbol=self.dialect.our_symbol(market["symbol"]),
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
        raw = self._call("fetch_ticker", lambda: self.exchange.fetch_ticker(self._sym(symbol)))
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
        reduce_only: bool = False,
    ) -> ExchangeOrder:
        """Send one GTC limit (or post-only) order carrying our client id. Raises a
        `Rejected` kind, `RateLimited`, or `Ambiguous` (resolve with `fetch_order_by_client_id`).

        `signed_at_ms` pins the request's timestamp: the caller records it before sending, so a
        process paused before the send cannot have its request executed later than
        `signed_at_ms + recv_window_ms` (the exchange refuses it). `reduce_only` (futures): the
        order may only shrink the position; the exchange refuses it (ReduceOnlyRejected) otherwise."""
        if side not in ("buy", "sell"):
            raise ValueError(f"side must be buy or sell, not {side!r}")
        params = self.dialect.new_order_params(client_order_id)
        if post_only:
            params["postOnly"] = True
        if reduce_only:
            if not self.dialect.futures:
                raise ValueError(f"{self.exchange.id} trades spot: an order cannot be reduce-only")
            params["reduceOnly"] = True
        with self.dialect.signed_at(self.exchange, signed_at_ms):
            raw = self._call(
                "create_order",
                lambda: self.exchange.create_order(self._sym(symbol), "limit", side, str(amount), str(price), params),
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
                lambda: self.exchange.fetch_order(None, self._sym(symbol), self.dialect.client_id_params(client_order_id)),
            )
        except errors.OrderNotFound:
            return None
        return self._order(raw, symbol=symbol, expect_client_id=client_order_id)

    def fetch_order(self, symbol: str, exchange_order_id: str) -> ExchangeOrder:
        raw = self._call("fetch_order", lambda: self.exchange.fetch_order(exchange_order_id, self._sym(symbol)))
        return self._order(raw, symbol=symbol)

    def fetch_open_orders(self, symbol: str) -> list[ExchangeOrder]:
        raw = self._call("fetch_open_orders", lambda: self.exchange.fetch_open_orders(self._sym(symbol)))
        return [self._order(item, symbol=symbol) for item in raw]

    def cancel_order(self, symbol: str, *, exchange_order_id: str | None = None, client_order_id: str | None = None) -> ExchangeOrder | None:
        """Cancel by exchange id or client id. Returns the canceled order, or None when the
        exchange no longer knows it as open (already filled, canceled or never placed): the
        caller queries to learn which."""
        if not exchange_order_id and not client_order_id:
            raise ValueError("cancel_order needs an exchange order id or a client order id")
        params = {} if exchange_order_id or not client_order_id else self.dialect.client_id_params(client_order_id)
        try:
            raw = self._call("cancel_order", lambda: self.exchange.cancel_order(exchange_order_id, self._sym(symbol), params),
                             write=True)
        except errors.OrderNotFound:
            return None
        return self._order(raw, symbol=symbol)

    def fetch_my_trades(self, symbol: str, *, since_ms: int | None = None, limit: int | None = 1000) -> list[Trade]:
        """Trades since `since_ms`, oldest first. Where the exchange answers a time range in windows
        (USDⓈ-M: 7 days), the windows are walked up to now, so `limit` is per request."""
        window = self.dialect.trade_window_ms
        if not window or since_ms is None:
            raw = self._call("fetch_my_trades", lambda: self.exchange.fetch_my_trades(self._sym(symbol), since_ms, limit))
            return [self._trade(item, symbol) for item in raw]
        trades: dict[str, Trade] = {}
        start, now = since_ms, int(time.time() * 1000)
        while start <= now:
            end = min(start + window - 1, now)
            batch: list[dict] = self._call("fetch_my_trades", partial(
                self.exchange.fetch_my_trades, self._sym(symbol), start, limit, {"endTime": end}))
            for item in batch:
                trade = self._trade(item, symbol)
                trades[trade.trade_id] = trade
            if limit and len(batch) >= limit:  # a full page: the rest of this window from its last trade
                start = max(int(item.get("timestamp") or start) for item in batch)
                if start >= end:
                    start = end + 1
                continue
            start = end + 1
        return sorted(trades.values(), key=lambda t: (t.timestamp_ms, t.trade_id))

    def fetch_ohlcv(self, symbol: str, timeframe: str = "1m", limit: int = 100,
                    since_ms: int | None = None) -> list[tuple[int, Decimal, Decimal, Decimal, Decimal, Decimal]]:
        """Candles as (open time ms, open, high, low, close, volume): the latest `limit`, or the
        first `limit` from `since_ms` on."""
        raw = self._call("fetch_ohlcv", lambda: self.exchange.fetch_ohlcv(self._sym(symbol), timeframe, since_ms, limit))
        return [(int(r[0]), dec(r[1]), dec(r[2]), dec(r[3]), dec(r[4]), dec(r[5])) for r in raw]

    # --- futures (USDⓈ-M, one-way mode) -------------------------------------------------------
    def fetch_position(self, symbol: str) -> FuturesPosition:
        """The position of `symbol` (qty 0 when flat), valued at the exchange's mark price."""
        self._futures_only()
        raw = self._call("fetch_positions", lambda: self.exchange.fetch_positions([self._sym(symbol)]))
        rows = [p for p in raw if self.dialect.our_symbol(p.get("symbol") or "") == symbol]
        if not rows:  # flat: the exchange lists no row (ccxt drops those with no entry price)
            mark = self.fetch_mark_price(symbol)
            return FuturesPosition(symbol, Decimal(0), Decimal(0), mark, Decimal(0), None, "", None)
        if len(rows) > 1 or rows[0].get("hedged"):
            raise errors.PositionModeMismatch(f"{symbol}: the exchange reports a hedge-mode position")
        row = rows[0]
        info = row.get("info") or {}
        qty = dec(info.get("positionAmt") if info.get("positionAmt") is not None else row.get("contracts"),
                  field="position amount")
        leverage = row.get("leverage")
        return FuturesPosition(
            symbol=symbol, qty=qty, entry_price=dec(row.get("entryPrice") or 0, field="entry price"),
            mark_price=dec(row.get("markPrice") or 0, field="mark price"),
            unrealized_pnl=dec(row.get("unrealizedPnl") or 0, field="unrealised PnL"),
            liquidation_price=dec_or_none(row.get("liquidationPrice")),
            margin_mode=str(row.get("marginMode") or ""), leverage=None if leverage in (None, "") else int(leverage),
        )

    def fetch_futures_account(self) -> FuturesAccount:
        """The margin asset's balances (USDT): wallet, margin balance, available and margins."""
        self._futures_only()
        raw = self._call("fetch_balance", self.exchange.fetch_balance)
        assets = (raw.get("info") or {}).get("assets") or []
        usdt = next((a for a in assets if a.get("asset") == "USDT"), None)
        if usdt is None:
            raise errors.MalformedReply("the futures account reports no USDT asset")
        return FuturesAccount(
            asset="USDT", wallet_balance=dec(usdt.get("walletBalance"), field="walletBalance"),
            margin_balance=dec(usdt.get("marginBalance"), field="marginBalance"),
            available_balance=dec(usdt.get("availableBalance"), field="availableBalance"),
            initial_margin=dec(usdt.get("initialMargin") or 0, field="initialMargin"),
            maint_margin=dec(usdt.get("maintMargin") or 0, field="maintMargin"),
            unrealized_pnl=dec(usdt.get("unrealizedProfit") or 0, field="unrealizedProfit"),
        )

    def fetch_leverage(self, symbol: str) -> tuple[int, str]:
        """(leverage, margin mode: cross or isolated) the exchange has for `symbol`."""
        self._futures_only()
        raw = self._call("fetch_leverages", lambda: self.exchange.fetch_leverages([self._sym(symbol)]))
        row = raw.get(self._sym(symbol)) or {}
        leverage = row.get("longLeverage") or row.get("shortLeverage")
        if leverage in (None, ""):
            raise errors.MalformedReply(f"{symbol}: the exchange reports no leverage")
        return int(leverage), str(row.get("marginMode") or "")

    def set_leverage(self, symbol: str, leverage: int) -> int:
        self._futures_only()
        raw = self._call("set_leverage", lambda: self.exchange.set_leverage(leverage, self._sym(symbol)), write=True)
        answered = int((raw or {}).get("leverage") or 0)
        if answered != leverage:
            raise errors.MalformedReply(f"{symbol}: asked for leverage {leverage}, the exchange answered {answered}")
        return answered

    def set_margin_mode(self, symbol: str, mode: str) -> None:
        """Set cross or isolated margin; already set is success."""
        self._futures_only()
        if mode not in ("cross", "isolated"):
            raise ValueError(f"margin mode must be cross or isolated, not {mode!r}")
        try:
            self._call("set_margin_mode", lambda: self.exchange.set_margin_mode(mode, self._sym(symbol)), write=True)
        except errors.Rejected as exc:
            if isinstance(exc.__cause__, ccxt.MarginModeAlreadySet):
                return
            raise

    def fetch_hedge_mode(self) -> bool:
        """Whether the account is in hedge (dual-side) position mode."""
        self._futures_only()
        raw = self._call("fetch_position_mode", lambda: self.exchange.fetch_position_mode())
        return bool((raw or {}).get("hedged"))

    def fetch_mark_price(self, symbol: str) -> Decimal:
        self._futures_only()
        raw = self._call("fetch_mark_price", lambda: self.exchange.fetch_mark_price(self._sym(symbol)))
        return dec(raw.get("markPrice"), field="mark price")

    def fetch_funding_payments(self, symbol: str, *, since_ms: int) -> list[FundingEvent]:
        """Funding payments of `symbol` since `since_ms`, oldest first, page by page."""
        self._futures_only()
        events: dict[str, FundingEvent] = {}
        start = since_ms
        while True:
            batch: list[dict] = self._call("fetch_funding_history", partial(
                self.exchange.fetch_funding_history, self._sym(symbol), start, 1000))
            for row in batch:
                if row.get("id") in (None, ""):
                    raise errors.MalformedReply(f"{symbol}: a funding payment without a transaction id")
                events[str(row["id"])] = FundingEvent(
                    tran_id=str(row["id"]), symbol=symbol, amount=dec(row.get("amount"), field="funding amount"),
                    asset=str(row.get("code") or "USDT"), timestamp_ms=int(row.get("timestamp") or 0))
            if len(batch) < 1000:
                return sorted(events.values(), key=lambda e: (e.timestamp_ms, e.tran_id))
            start = max(int(row.get("timestamp") or start) for row in batch)

    def _futures_only(self) -> None:
        if not self.dialect.futures:
            raise errors.UnsupportedExchange(f"{self.exchange.id} trades spot: it has no positions, leverage or funding")

    def _sym(self, symbol: str) -> str:
        return self.dialect.ccxt_symbol(symbol)

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
            symbol=self.dialect.our_symbol(raw.get("symbol") or symbol),
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
            symbol=self.dialect.our_symbol(raw.get("symbol") or symbol),
            trade_id=str(raw["id"]),
            exchange_order_id=str(raw["order"]),
            side=str(raw.get("side")).lower(),
            price=dec(raw.get("price"), field="trade price"),
            amount=dec(raw.get("amount"), field="trade amount"),
            fee=dec(fee.get("cost") or 0),
            fee_currency=fee.get("currency") or "",
            is_maker=None if maker is None else maker == "maker",
            timestamp_ms=int(raw.get("timestamp") or 0),
            # userTrades says realizedPnl; the stream's ORDER_TRADE_UPDATE says rp.
            realized_pnl=dec_or_none(_first((raw.get("info") or {}), "realizedPnl", "rp")) if self.dialect.futures else None,
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
        code = _error_code(text)
        by_code = self.dialect.error_codes.get(code) if code is not None else None
        if by_code is not None and isinstance(exc, ccxt.ExchangeError):
            return by_code(text)
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


_CODE = re.compile(r'"code"\s*:\s*(-?\d+)')


def _error_code(text: str) -> int | None:
    """The exchange's error code in a ccxt error text (ccxt puts the raw reply body in it)."""
    match = _CODE.search(text)
    return int(match.group(1)) if match else None


# Set by the metrics module: called with (exchange, method, seconds, error class name or None)
# after every request. None: nothing is recorded.
_observer: Callable[[str, str, float, str | None], None] | None = None


def set_request_observer(observer: Callable[[str, str, float, str | None], None] | None) -> None:
    global _observer
    _observer = observer


def _first(row: dict, *keys: str) -> Any:
    """The value of the first of `keys` that `row` has."""
    return next((row[key] for key in keys if row.get(key) is not None), None)

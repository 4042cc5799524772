"""The in-process transport of backtests: the gateway's interface, answered by the simulator's
matching engine in the same process, with no HTTP and no ccxt in between.

Everything that decides and records orders (`SymbolEngine`, `trading.grid`, the services and
the ledger) is the code `runbot` runs; only the wire is left out. Replies carry what ccxt makes
of the simulator's Binance replies (same statuses, ids, fees and times), refusals raise the
gateway's own error classes, and the account's order limits (Binance's 100 per 10 s and 200,000
per day) are kept in the simulated time. A test holds the two paths to the same orders.
"""
from __future__ import annotations

from decimal import Decimal
from types import SimpleNamespace
from typing import Callable

from trading.exchange import errors
from trading.exchange.dialects import dialect_for
from trading.exchange.types import Balance, ExchangeOrder, ListedMarket, Ticker, Trade
from trading.simulator import errors as sim_errors
from trading.simulator.errors import SimError
from trading.simulator.matching import LIMIT, LIMIT_MAKER, Engine, Order
from trading.simulator.matching import Trade as SimTrade

STATUS = {"NEW": "open", "PARTIALLY_FILLED": "partially_filled", "FILLED": "filled", "CANCELED": "canceled",
          "EXPIRED": "expired", "REJECTED": "rejected"}
REFUSALS: dict[str, type[errors.Rejected]] = {
    sim_errors.MSG_INSUFFICIENT_BALANCE: errors.InsufficientFunds,
    sim_errors.MSG_WOULD_TAKE: errors.PostOnlyWouldTake,
    sim_errors.MSG_DUPLICATE_ORDER: errors.DuplicateClientOrderId,
}


class OrderWindows:
    """Orders sent per fixed window of simulated time, as the exchange counts them."""

    def __init__(self, limits: list[tuple[int, int]], now_ms: Callable[[], int]):
        self.limits = limits  # (window in ms, orders allowed in it)
        self.now_ms = now_ms
        self.counts: dict[int, tuple[int, int]] = {}  # window -> (window start, orders sent)

    def take(self) -> float:
        """0 when one more order may go now (and count it), else seconds until it may."""
        now = self.now_ms()
        wait = 0.0
        for window, allowed in self.limits:
            start = now // window * window
            begun, sent = self.counts.get(window, (start, 0))
            if begun != start:
                sent = 0
            if sent >= allowed:
                wait = max(wait, (start + window - now) / 1000)
        if wait:
            return wait
        for window, _ in self.limits:
            start = now // window * window
            begun, sent = self.counts.get(window, (start, 0))
            self.counts[window] = (start, sent + 1 if begun == start else 1)
        return 0.0


class LocalGateway:
    """A spot account of the simulator's `Engine`, reached by direct calls."""

    budget = None  # no request weight: nothing goes over a wire

    def __init__(self, engine: Engine, now_ms: Callable[[], int], exchange_id: str = "binance"):
        self.engine = engine
        self.now_ms = now_ms
        self.dialect = dialect_for(exchange_id)
        self.exchange = SimpleNamespace(id=exchange_id)
        self.recv_window_ms = self.dialect.recv_window_ms(SimpleNamespace(options={}))
        config = engine.config
        self.orders = OrderWindows([(10_000, config.order_limit_10s), (86_400_000, config.order_limit_day)], now_ms)
        self.requests = 0

    def take_order_slot(self) -> float:
        return self.orders.take()

    # --- markets and account ---------------------------------------------------------------
    def market_rules(self, symbol: str) -> ListedMarket:
        try:
            spec = self.engine.spec(symbol)
        except SimError:
            raise errors.Rejected(f"{self.exchange.id} does not list {symbol}") from None
        return ListedMarket(symbol=spec.symbol, market_id=spec.market_id, base=spec.base, quote=spec.quote,
                            tick_size=spec.tick, step_size=spec.step, min_amount=spec.min_qty,
                            min_notional=spec.min_notional)

    def fetch_ticker(self, symbol: str) -> Ticker:
        self.requests += 1
        return Ticker(symbol=symbol, bid=None, ask=None, last=self.engine.price(symbol), timestamp_ms=self.now_ms())

    def fetch_balances(self) -> dict[str, Balance]:
        self.requests += 1
        return {asset: Balance(asset, b.free, b.locked) for asset, b in self.engine.balances().items()}

    # --- orders ----------------------------------------------------------------------------
    def create_limit_order(self, *, symbol: str, side: str, amount: Decimal, price: Decimal, client_order_id: str,
                           post_only: bool, signed_at_ms: int | None = None, reduce_only: bool = False) -> ExchangeOrder:
        if side not in ("buy", "sell"):
            raise ValueError(f"side must be buy or sell, not {side!r}")
        if reduce_only:
            raise ValueError("a spot order cannot be reduce-only")
        self.requests += 1
        try:
            order, _ = self.engine.place_order(symbol, side.upper(), LIMIT_MAKER if post_only else LIMIT, amount, price,
                                               client_order_id)
        except SimError as exc:
            raise _refusal(exc) from None
        return self._order(order, symbol)

    def fetch_order_by_client_id(self, symbol: str, client_order_id: str) -> ExchangeOrder | None:
        self.requests += 1
        try:
            return self._order(self.engine.get_order(symbol, client_order_id=client_order_id), symbol)
        except SimError:
            return None

    def fetch_order(self, symbol: str, exchange_order_id: str) -> ExchangeOrder:
        self.requests += 1
        try:
            return self._order(self.engine.get_order(symbol, order_id=int(exchange_order_id)), symbol)
        except SimError as exc:
            raise errors.OrderNotFound(exc.msg) from None

    def fetch_open_orders(self, symbol: str) -> list[ExchangeOrder]:
        self.requests += 1
        return [self._order(order, symbol) for order in self.engine.open_orders(symbol)]

    def cancel_order(self, symbol: str, *, exchange_order_id: str | None = None,
                     client_order_id: str | None = None) -> ExchangeOrder | None:
        if not exchange_order_id and not client_order_id:
            raise ValueError("cancel_order needs an exchange order id or a client order id")
        self.requests += 1
        try:
            order = self.engine.cancel_order(symbol, order_id=int(exchange_order_id) if exchange_order_id else None,
                                             client_order_id=None if exchange_order_id else client_order_id)
        except SimError:
            return None
        return self._order(order, symbol)

    def fetch_my_trades(self, symbol: str, *, since_ms: int | None = None, limit: int | None = 1000) -> list[Trade]:
        self.requests += 1
        return [self._trade(t, symbol) for t in self.engine.trades(symbol, start_time=since_ms, limit=limit)]

    def parse_trade(self, raw: dict, symbol: str) -> Trade:
        raise errors.UnsupportedExchange("the in-process transport has no streams")

    # --- replies as ccxt gives them ----------------------------------------------------------
    @staticmethod
    def _order(order: Order, symbol: str) -> ExchangeOrder:
        filled = order.executed_qty
        return ExchangeOrder(
            symbol=symbol, exchange_order_id=str(order.order_id), client_order_id=order.client_order_id,
            side=order.side.lower(), price=order.price, amount=order.orig_qty, filled=filled,
            average_price=order.cumm_quote_qty / filled if filled else None, status=STATUS[order.status],
            post_only=order.type == LIMIT_MAKER, timestamp_ms=order.time,
        )

    @staticmethod
    def _trade(trade: SimTrade, symbol: str) -> Trade:
        return Trade(symbol=symbol, trade_id=str(trade.trade_id), exchange_order_id=str(trade.order_id),
                     side=trade.side.lower(), price=trade.price, amount=trade.qty, fee=trade.commission,
                     fee_currency=trade.commission_asset, is_maker=trade.is_maker, timestamp_ms=trade.time)


def _refusal(exc: SimError) -> errors.ExchangeFailure:
    text = f'{{"code":{exc.code},"msg":"{exc.msg}"}}'
    if exc.code == sim_errors.TOO_MANY_ORDERS:
        return errors.RateLimited(text)
    return REFUSALS.get(exc.msg, errors.Rejected)(text)

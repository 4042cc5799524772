"""The simulator's matching engine: the simulated account's markets, price paths, balances,
orders, trades and order ledger.

One lock guards all state, so the engine can be shared by the HTTP handler threads, the
auto-advance timer and test code. Methods return copies; nothing handed out can change the
engine's state behind its lock.

Matching rules (kept simple on purpose):
- A LIMIT order that crosses the current price (buy at or above it, sell at or below it) fills
  completely at once as taker, at its own limit price. A LIMIT_MAKER that would cross is refused.
- A resting order fills as maker at its own price when the price path reaches it: a buy when
  the path's low is at or below the order price, a sell when its high is at or above it.
  With `partial_fill_ratio` set, each price move fills only that fraction of the original
  quantity (rounded down to the step, at least one step).
- Fees are charged in the asset received (base for a buy, quote for a sell), rounded to
  8 decimals.
"""
from __future__ import annotations

import bisect
import re
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from decimal import ROUND_HALF_UP, Decimal

from . import errors
from .config import MarketSpec, SimConfig, to_decimal
from .errors import SimError
from .pricepath import (
    Candle,
    GbmPath,
    PricePath,
    ReplayPath,
    Segment,
    candle_path,
    floor_to,
    load_klines_csv,
    round_to,
)

BUY, SELL = "BUY", "SELL"
LIMIT, LIMIT_MAKER = "LIMIT", "LIMIT_MAKER"
NEW, PARTIALLY_FILLED, FILLED = "NEW", "PARTIALLY_FILLED", "FILLED"
CANCELED, EXPIRED = "CANCELED", "EXPIRED"
OPEN_STATUSES = (NEW, PARTIALLY_FILLED)
CLIENT_ID_PATTERN = r"^[\.A-Z\:/a-z0-9_-]{1,36}$"
_CLIENT_ID_RE = re.compile(CLIENT_ID_PATTERN)
FEE_UNIT = Decimal("0.00000001")
ZERO = Decimal("0")


def now_ms() -> int:
    return time.time_ns() // 1_000_000


@dataclass(frozen=True)
class Balance:
    free: Decimal
    locked: Decimal

    @property
    def total(self) -> Decimal:
        return self.free + self.locked


@dataclass
class Order:
    order_id: int
    client_order_id: str
    symbol: str  # Binance form, e.g. BTCUSDT
    side: str
    type: str
    price: Decimal
    orig_qty: Decimal
    time: int
    update_time: int
    executed_qty: Decimal = ZERO
    cumm_quote_qty: Decimal = ZERO
    status: str = NEW
    time_in_force: str = "GTC"
    foreign: bool = False

    @property
    def remaining(self) -> Decimal:
        return self.orig_qty - self.executed_qty

    @property
    def is_open(self) -> bool:
        return self.status in OPEN_STATUSES

    def ledger_entry(self) -> dict:
        """The JSON shape of `GET /sim/ledger` rows."""
        return {
            "clientOrderId": self.client_order_id,
            "orderId": self.order_id,
            "symbol": self.symbol,
            "side": self.side,
            "type": self.type,
            "price": str(self.price),
            "origQty": str(self.orig_qty),
            "executedQty": str(self.executed_qty),
            "cummulativeQuoteQty": str(self.cumm_quote_qty),
            "status": self.status,
            "time": self.time,
            "updateTime": self.update_time,
            "foreign": self.foreign,
        }


@dataclass(frozen=True)
class Trade:
    trade_id: int
    order_id: int
    symbol: str
    side: str
    price: Decimal
    qty: Decimal
    quote_qty: Decimal
    commission: Decimal
    commission_asset: str
    time: int
    is_maker: bool


@dataclass
class _Market:
    spec: MarketSpec
    path: PricePath
    # The highest open buy and the lowest open sell price (None: no such order), or unset
    # while the open orders have changed since they were last worked out.
    reach: tuple[Decimal | None, Decimal | None] | None = None
    trades: list[Trade] = field(default_factory=list)  # this market's, oldest first
    trade_times: list[int] = field(default_factory=list)  # their times, for a search by time


@dataclass
class _State:
    """Everything `reset()` throws away."""

    markets: dict[str, _Market]
    balances: dict[str, list[Decimal]]  # asset -> [free, locked]
    orders: dict[int, Order] = field(default_factory=dict)
    open_ids: dict[int, None] = field(default_factory=dict)  # insertion-ordered set
    client_ids: dict[str, list[int]] = field(default_factory=dict)
    trades: list[Trade] = field(default_factory=list)
    trades_in_time_order: bool = True  # False once a trade was stamped before the one before
    next_order_id: int = 1
    next_trade_id: int = 1
    update_id: int = 1


class Engine:
    """A thread-safe simulated spot account on a set of markets."""

    def __init__(self, config: SimConfig | None = None,
                 clock: Callable[[], int] = now_ms,
                 path_factory: Callable[[MarketSpec, int], PricePath] | None = None) -> None:
        self.config = config or SimConfig()
        self._clock = clock
        self._path_factory = path_factory  # builds each market's path instead of the spec
        self._lock = threading.RLock()
        self._state = self._fresh_state()
        self.trade_listeners: list[Callable[[Trade], None]] = []  # called under the engine's lock

    # ----------------------------------------------------------------- set-up

    def _fresh_state(self) -> _State:
        start = self.config.start_time_ms
        if start is None:
            start = self._clock() // self.config.candle_ms * self.config.candle_ms
        markets = {spec.market_id: _Market(spec, self._make_path(spec, start))
                   for spec in self.config.markets}
        balances = {asset: [amount, ZERO] for asset, amount in self.config.balances.items()}
        for spec in self.config.markets:
            balances.setdefault(spec.base, [ZERO, ZERO])
            balances.setdefault(spec.quote, [ZERO, ZERO])
        return _State(markets=markets, balances=balances)

    def _make_path(self, spec: MarketSpec, start_ms: int) -> PricePath:
        if self._path_factory is not None:
            return self._path_factory(spec, start_ms)
        if spec.klines_csv is not None:
            rows = load_klines_csv(spec.klines_csv, spec.tick)
            return ReplayPath(rows, self.config.max_candles)
        if spec.price is None:  # MarketSpec refuses this; narrows the type
            raise ValueError(f"{spec.symbol}: give a starting price or a klines CSV")
        return GbmPath(spec.price, spec.tick, spec.volatility, spec.drift,
                       f"{self.config.seed}:{spec.market_id}", start_ms,
                       self.config.candle_ms, self.config.max_candles)

    def reset(self) -> None:
        """Back to the configured start: balances, prices, no orders, no trades."""
        with self._lock:
            self._state = self._fresh_state()

    # ------------------------------------------------------------ market data

    def spec(self, symbol: str) -> MarketSpec:
        """The market for 'BTCUSDT' or 'BTC/USDT'; SimError -1121 when unknown."""
        return self._market(symbol).spec

    def specs(self) -> list[MarketSpec]:
        return [market.spec for market in self._state.markets.values()]

    def price(self, symbol: str) -> Decimal:
        with self._lock:
            return self._market(symbol).path.price

    def prices(self) -> dict[str, Decimal]:
        with self._lock:
            return {market_id: m.path.price for market_id, m in self._state.markets.items()}

    def candles(self, symbol: str) -> list[Candle]:
        """The recorded path of a market, oldest first."""
        with self._lock:
            return self._market(symbol).path.candles()

    def interval_ms(self, symbol: str) -> int:
        return self._market(symbol).path.interval_ms

    def update_id(self) -> int:
        with self._lock:
            return self._state.update_id

    def set_price(self, symbol: str, price: Decimal) -> list[Trade]:
        """Move a market's price (rounded to its tick) and fill the resting orders it reaches."""
        with self._lock:
            market = self._market(symbol)
            price = round_to(to_decimal(price, "price"), market.spec.tick)
            if price <= 0:
                raise ValueError(f"price must be positive: {price}")
            market.path.override(price)
            self._state.update_id += 1
            return self._match_resting(market, low=price, high=price)

    def step(self, n: int = 1, symbol: str | None = None) -> list[Trade]:
        """Advance the price path of one market (or all) by `n` candles; returns the fills."""
        if n < 0:
            raise ValueError("n must not be negative")
        with self._lock:
            markets = ([self._market(symbol)] if symbol is not None
                       else list(self._state.markets.values()))
            trades: list[Trade] = []
            for _ in range(n):
                for market in markets:
                    candle = market.path.advance()
                    if candle is not None:
                        self._state.update_id += 1
                        trades += self._match_resting(market, low=candle.low, high=candle.high)
            return trades

    def step_point(self, symbol: str, on_time: Callable[[int], None] | None = None) -> tuple[Segment, list[Trade]] | None:
        """Walk one market's path to its next point (`pricepath.candle_path`: open, the nearer
        extreme, the other, close) and fill the resting orders that stretch reaches, in the
        order it reaches them, as maker at their own price. `on_time` is called with the time
        of the point first (a simulated clock follows it). None when the path has ended."""
        with self._lock:
            market = self._market(symbol)
            segment = market.path.advance_point()
            if segment is None:
                return None
            if on_time is not None:
                on_time(segment.time_ms)
            self._state.update_id += 1
            top_buy, bottom_sell = self._reach(market)
            if (top_buy is None or top_buy < segment.low) and (bottom_sell is None or bottom_sell > segment.high):
                return segment, []
            return segment, self._match_resting(market, low=segment.low, high=segment.high,
                                                falling=segment.end < segment.start)

    def skip_quiet_candle(self, symbol: str, above: Decimal, below: Decimal,
                          on_time: Callable[[int], None] | None = None) -> Candle | None:
        """Walk the whole next candle at once when it is quiet: every price of its path (and the
        current price) strictly between `above` and `below`, and no resting order within its
        reach. The path, clock and book end as four `step_point` calls would leave them, none of
        which would fill anything. None (and nothing walked) when the candle is not quiet, the
        path has ended, or a candle is part way through."""
        with self._lock:
            market = self._market(symbol)
            path = market.path
            if path.mid_candle:
                return None
            candle = path.peek()
            if candle is None:
                return None
            low, high = min(candle.low, path.price), max(candle.high, path.price)
            if not above < low or not high < below:
                return None
            top_buy, bottom_sell = self._reach(market)
            if (top_buy is not None and top_buy >= low) or (bottom_sell is not None and bottom_sell <= high):
                return None
            path.advance()
            points = candle_path(candle, path.interval_ms)
            if on_time is not None:
                on_time(points[-1][1])  # the close's time
            self._state.update_id += len(points)  # one per point, as step_point counts
            return candle

    # ---------------------------------------------------------------- account

    def balances(self) -> dict[str, Balance]:
        with self._lock:
            return {asset: Balance(free, locked)
                    for asset, (free, locked) in sorted(self._state.balances.items())}

    def balance(self, asset: str) -> Balance:
        with self._lock:
            free, locked = self._state.balances.get(asset.upper(), [ZERO, ZERO])
            return Balance(free, locked)

    def set_balance(self, asset: str, free: Decimal) -> None:
        """Set the free amount of an asset (a deposit or withdrawal out of band)."""
        free = to_decimal(free, f"balance {asset}")
        if free < 0:
            raise ValueError("a balance must not be negative")
        with self._lock:
            self._account(asset.upper())[0] = free

    # ----------------------------------------------------------------- orders

    def validate_order(self, symbol: str, side: str, order_type: str, quantity: Decimal,
                       price: Decimal, client_order_id: str | None = None) -> MarketSpec:
        """Check an order as `place_order` would, without placing it."""
        quantity, price = to_decimal(quantity, "quantity"), to_decimal(price, "price")
        with self._lock:
            market = self._market(symbol)
            self._check_order(market, side, order_type, quantity, price, client_order_id)
            return market.spec

    def place_order(self, symbol: str, side: str, order_type: str, quantity: Decimal,
                    price: Decimal, client_order_id: str | None = None, *,
                    foreign: bool = False) -> tuple[Order, list[Trade]]:
        """Accept a GTC LIMIT or LIMIT_MAKER order; returns it with the fills it took at once.

        Raises SimError with Binance's code when the order is refused; a refused order changes
        nothing.
        """
        quantity, price = to_decimal(quantity, "quantity"), to_decimal(price, "price")
        with self._lock:
            market = self._market(symbol)
            self._check_order(market, side, order_type, quantity, price, client_order_id)
            order = self._new_order(market, side, order_type, quantity, price, client_order_id,
                                    foreign)
            self._lock_funds(market.spec, order)
            trades = []
            if self._crosses(market, side, price):
                trades.append(self._execute(market, order, order.orig_qty, is_maker=False))
            return replace(order), trades

    def get_order(self, symbol: str, order_id: int | None = None,
                  client_order_id: str | None = None) -> Order:
        """Find an order by id or client id (the latest with that client id); -2013 if none."""
        with self._lock:
            return replace(self._find(symbol, order_id, client_order_id, errors.no_such_order))

    def cancel_order(self, symbol: str, order_id: int | None = None,
                     client_order_id: str | None = None, *, status: str = CANCELED) -> Order:
        """Cancel an open order and release its funds; -2011 when unknown or already closed.

        `status=EXPIRED` ends it as the exchange itself would (out-of-band use only).
        """
        if status not in (CANCELED, EXPIRED):
            raise ValueError(f"status must be {CANCELED} or {EXPIRED}: {status}")
        with self._lock:
            order = self._find(symbol, order_id, client_order_id, errors.unknown_order)
            if not order.is_open:
                raise errors.unknown_order()
            self._cancel(order, status)
            return replace(order)

    def cancel_all(self, symbol: str) -> list[Order]:
        """Cancel every open order of a market."""
        with self._lock:
            market_id = self._market(symbol).spec.market_id
            orders = [o for o in self._open_orders() if o.symbol == market_id]
            for order in orders:
                self._cancel(order)
            return [replace(order) for order in orders]

    def fill_order(self, symbol: str, order_id: int | None = None,
                   client_order_id: str | None = None, qty: Decimal | None = None) -> list[Trade]:
        """Fill an open order out of band at its price, as maker (all that remains by default)."""
        with self._lock:
            order = self._find(symbol, order_id, client_order_id, errors.no_such_order)
            if not order.is_open:
                raise SimError(errors.NO_SUCH_ORDER, f"Order is {order.status}, not open.")
            market = self._market(order.symbol)
            qty = order.remaining if qty is None else to_decimal(qty, "qty")
            if qty <= 0 or qty > order.remaining or qty % market.spec.step != 0:
                raise ValueError(f"fill quantity must be a positive multiple of "
                                 f"{market.spec.step} up to {order.remaining}: {qty}")
            return [self._execute(market, order, qty, is_maker=True)]

    def open_orders(self, symbol: str | None = None) -> list[Order]:
        with self._lock:
            market_id = None if symbol is None else self._market(symbol).spec.market_id
            return [replace(o) for o in self._open_orders()
                    if market_id is None or o.symbol == market_id]

    def orders(self, symbol: str | None = None) -> list[Order]:
        """Every order ever accepted, oldest first."""
        with self._lock:
            market_id = None if symbol is None else self._market(symbol).spec.market_id
            return [replace(o) for o in self._state.orders.values()
                    if market_id is None or o.symbol == market_id]

    def ledger(self, symbol: str | None = None) -> list[dict]:
        """Every order ever accepted as JSON-ready dicts (see Order.ledger_entry)."""
        return [order.ledger_entry() for order in self.orders(symbol)]

    def trades(self, symbol: str | None = None, order_id: int | None = None,
               from_id: int | None = None, start_time: int | None = None,
               end_time: int | None = None, limit: int | None = None) -> list[Trade]:
        """Trades oldest first. With `limit`, the first ones from `from_id`/`start_time` when
        either is given, otherwise the most recent ones."""
        with self._lock:
            market_id = None if symbol is None else self._market(symbol).spec.market_id
            if (market_id is not None and start_time is not None and order_id is None and from_id is None
                    and end_time is None and self._state.trades_in_time_order):
                market = self._market(symbol or "")
                selected = market.trades[bisect.bisect_left(market.trade_times, start_time):]
                return selected[:limit] if limit is not None else selected
            selected = [t for t in self._state.trades
                        if (market_id is None or t.symbol == market_id)
                        and (order_id is None or t.order_id == order_id)
                        and (from_id is None or t.trade_id >= from_id)
                        and (start_time is None or t.time >= start_time)
                        and (end_time is None or t.time <= end_time)]
        if limit is None or len(selected) <= limit:
            return selected
        if from_id is not None or start_time is not None:
            return selected[:limit]
        return selected[len(selected) - limit:]

    # -------------------------------------------------------------- internals

    def _market(self, symbol: str) -> _Market:
        market_id = (symbol or "").replace("/", "").upper()
        market = self._state.markets.get(market_id)
        if market is None:
            raise errors.invalid_symbol()
        return market

    def _account(self, asset: str) -> list[Decimal]:
        return self._state.balances.setdefault(asset, [ZERO, ZERO])

    def _open_orders(self) -> list[Order]:
        return [self._state.orders[order_id] for order_id in self._state.open_ids]

    def _check_order(self, market: _Market, side: str, order_type: str, quantity: Decimal,
                     price: Decimal, client_order_id: str | None) -> None:
        spec = market.spec
        if side not in (BUY, SELL):
            raise SimError(errors.INVALID_SIDE, "Invalid side.")
        if order_type not in (LIMIT, LIMIT_MAKER):
            raise SimError(errors.INVALID_ORDER_TYPE, "Invalid orderType.")
        if client_order_id is not None and not _CLIENT_ID_RE.match(client_order_id):
            raise errors.illegal("newClientOrderId", CLIENT_ID_PATTERN)
        if not spec.min_price <= price <= spec.max_price or price % spec.tick != 0:
            raise errors.filter_failure("PRICE_FILTER")
        if not spec.min_qty <= quantity <= spec.max_qty or quantity % spec.step != 0:
            raise errors.filter_failure("LOT_SIZE")
        if price * quantity < spec.min_notional:
            raise errors.filter_failure("NOTIONAL")
        if client_order_id is not None and self._open_with_client_id(client_order_id):
            raise errors.new_order_rejected(errors.MSG_DUPLICATE_ORDER)
        if order_type == LIMIT_MAKER and self._crosses(market, side, price):
            raise errors.new_order_rejected(errors.MSG_WOULD_TAKE)
        asset, needed = self._funds_needed(spec, side, quantity, price)
        if self._account(asset)[0] < needed:
            raise errors.new_order_rejected(errors.MSG_INSUFFICIENT_BALANCE)

    def _open_with_client_id(self, client_order_id: str) -> bool:
        return any(self._state.orders[order_id].is_open
                   for order_id in self._state.client_ids.get(client_order_id, ()))

    @staticmethod
    def _crosses(market: _Market, side: str, price: Decimal) -> bool:
        current = market.path.price
        return price >= current if side == BUY else price <= current

    @staticmethod
    def _funds_needed(spec: MarketSpec, side: str, quantity: Decimal,
                      price: Decimal) -> tuple[str, Decimal]:
        return (spec.quote, price * quantity) if side == BUY else (spec.base, quantity)

    def _new_order(self, market: _Market, side: str, order_type: str, quantity: Decimal,
                   price: Decimal, client_order_id: str | None, foreign: bool) -> Order:
        state = self._state
        order_id = state.next_order_id
        state.next_order_id += 1
        now = self._clock()
        order = Order(order_id=order_id,
                      client_order_id=client_order_id or f"sim-auto-{order_id}",
                      symbol=market.spec.market_id, side=side, type=order_type, price=price,
                      orig_qty=quantity, time=now, update_time=now, foreign=foreign)
        state.orders[order_id] = order
        state.open_ids[order_id] = None
        market.reach = None
        state.client_ids.setdefault(order.client_order_id, []).append(order_id)
        state.update_id += 1
        return order

    def _lock_funds(self, spec: MarketSpec, order: Order) -> None:
        asset, amount = self._funds_needed(spec, order.side, order.orig_qty, order.price)
        account = self._account(asset)
        account[0] -= amount
        account[1] += amount

    def _cancel(self, order: Order, status: str = CANCELED) -> None:
        spec = self._market(order.symbol).spec
        asset, amount = self._funds_needed(spec, order.side, order.remaining, order.price)
        account = self._account(asset)
        account[1] -= amount
        account[0] += amount
        self._close(order, status)

    def _close(self, order: Order, status: str) -> None:
        order.status = status
        order.update_time = self._clock()
        self._state.open_ids.pop(order.order_id, None)
        self._market(order.symbol).reach = None
        self._state.update_id += 1

    def _match_resting(self, market: _Market, low: Decimal, high: Decimal,
                       falling: bool | None = None) -> list[Trade]:
        """Fill the open orders of `market` that prices from `low` to `high` reach; with
        `falling` given, in the order a path going down (or up) reaches them."""
        reached = [order for order in self._open_orders() if order.symbol == market.spec.market_id
                   and (order.price >= low if order.side == BUY else order.price <= high)]
        if falling is not None:
            reached.sort(key=lambda o: (-o.price if falling else o.price, o.order_id))
        trades = []
        for order in reached:
            if (qty := self._fill_chunk(market, order)):
                trades.append(self._execute(market, order, qty, is_maker=True))
        return trades

    def _reach(self, market: _Market) -> tuple[Decimal | None, Decimal | None]:
        if market.reach is None:
            mine = [o for o in self._open_orders() if o.symbol == market.spec.market_id]
            market.reach = (max((o.price for o in mine if o.side == BUY), default=None),
                            min((o.price for o in mine if o.side == SELL), default=None))
        return market.reach

    def _fill_chunk(self, market: _Market, order: Order) -> Decimal:
        ratio = self.config.partial_fill_ratio
        if ratio is None:
            return order.remaining
        chunk = max(floor_to(order.orig_qty * ratio, market.spec.step), market.spec.step)
        return min(chunk, order.remaining)

    def _execute(self, market: _Market, order: Order, qty: Decimal, is_maker: bool) -> Trade:
        """Fill `qty` of `order` at its price: move the balances, record the trade."""
        spec = market.spec
        quote_qty = order.price * qty
        rate = self.config.maker_fee if is_maker else self.config.taker_fee
        if order.side == BUY:
            self._account(spec.quote)[1] -= quote_qty
            commission, commission_asset = _fee(qty * rate), spec.base
            self._account(spec.base)[0] += qty - commission
        else:
            self._account(spec.base)[1] -= qty
            commission, commission_asset = _fee(quote_qty * rate), spec.quote
            self._account(spec.quote)[0] += quote_qty - commission
        order.executed_qty += qty
        order.cumm_quote_qty += quote_qty
        order.update_time = self._clock()
        if order.remaining == 0:
            self._close(order, FILLED)
        else:
            order.status = PARTIALLY_FILLED
        return self._record_trade(order, qty, quote_qty, commission, commission_asset, is_maker)

    def _record_trade(self, order: Order, qty: Decimal, quote_qty: Decimal, commission: Decimal,
                      commission_asset: str, is_maker: bool) -> Trade:
        state = self._state
        trade = Trade(trade_id=state.next_trade_id, order_id=order.order_id, symbol=order.symbol,
                      side=order.side, price=order.price, qty=qty, quote_qty=quote_qty,
                      commission=commission, commission_asset=commission_asset,
                      time=order.update_time, is_maker=is_maker)
        state.next_trade_id += 1
        if state.trades and trade.time < state.trades[-1].time:
            state.trades_in_time_order = False
        state.trades.append(trade)
        market = self._market(order.symbol)
        market.trades.append(trade)
        market.trade_times.append(trade.time)
        state.update_id += 1
        for listener in self.trade_listeners:
            listener(trade)
        return trade

    def _find(self, symbol: str, order_id: int | None, client_order_id: str | None,
              not_found: Callable[[], SimError]) -> Order:
        market_id = self._market(symbol).spec.market_id
        if order_id is not None:
            order = self._state.orders.get(int(order_id))
        elif client_order_id:
            ids: Iterable[int] = self._state.client_ids.get(client_order_id, ())
            candidates = [self._state.orders[i] for i in ids
                          if self._state.orders[i].symbol == market_id]
            order = candidates[-1] if candidates else None
        else:
            raise SimError(errors.MANDATORY_PARAM, "Param 'origClientOrderId' or 'orderId' must "
                           "be sent, but both were empty/null!")
        if order is None or order.symbol != market_id:
            raise not_found()
        return order


def _fee(amount: Decimal) -> Decimal:
    return amount.quantize(FEE_UNIT, rounding=ROUND_HALF_UP)

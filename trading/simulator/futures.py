"""A simulated Binance USDⓈ-M perpetual account in one-way mode, on the spot engine's matching.

Orders match as on spot (resting orders fill as maker when the price path reaches them, a
crossing GTC order fills at once as taker). What differs is the account: one USDT wallet, a signed
position per symbol netted from fills (`trading.margin`), margin instead of locked funds, a mark
price (last price x (1 + basis)), funding at every 8-hour boundary of the path's time, and
liquidation at mark. The rules a new order meets, in Binance's order: filters (price against the
mark for PERCENT_PRICE; reduce-only orders are exempt from the minimum notional), one-way position
side, reduce-only (-2022), duplicate open client id (-4116), post-only that would take (-5022, not
stored), margin (-2019, not for reduce-only). A reduce-only order fills at most the position left,
so it never flips it; the rest is cancelled.

Simplifications: open-order margin counts every non-reduce-only order at price x quantity /
leverage; an isolated position's wallet is its entry notional / leverage; a liquidation closes at
mark and charges the symbol's liquidation fee on that notional.
"""
from __future__ import annotations

import re
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from decimal import ROUND_HALF_UP, Decimal

from trading import margin

from . import errors
from .config import DecimalLike, MarketSpec, SimConfig, split_symbol, to_decimal
from .errors import SimError
from .matching import BUY, CLIENT_ID_PATTERN, FILLED, LIMIT, SELL, Engine, Order, Trade, _Market, now_ms
from .pricepath import round_to

ZERO = Decimal(0)
GTC, GTX = "GTC", "GTX"
CROSSED, ISOLATED = "CROSSED", "ISOLATED"
FUNDING_INTERVAL_MS = 8 * 3_600_000
MONEY_UNIT = Decimal("0.00000001")
_CLIENT_ID_RE = re.compile(CLIENT_ID_PATTERN)

# BTCUSDT's lowest brackets as Binance serves them: (notional floor, cap, maintenance rate, max leverage).
BTC_BRACKETS = (
    (Decimal("0"), Decimal("50000"), Decimal("0.004"), 125),
    (Decimal("50000"), Decimal("600000"), Decimal("0.005"), 100),
    (Decimal("600000"), Decimal("3000000"), Decimal("0.0065"), 75),
    (Decimal("3000000"), Decimal("12000000"), Decimal("0.01"), 50),
)
ALT_BRACKETS = (
    (Decimal("0"), Decimal("10000"), Decimal("0.005"), 75),
    (Decimal("10000"), Decimal("100000"), Decimal("0.0065"), 50),
    (Decimal("100000"), Decimal("500000"), Decimal("0.01"), 25),
    (Decimal("500000"), Decimal("1000000"), Decimal("0.02"), 20),
)

# Binance's USDⓈ-M futures error codes and texts (ccxt maps several by code).
MARGIN_INSUFFICIENT = (-2019, "Margin is insufficient.")
REDUCE_ONLY_REJECTED = (-2022, "ReduceOnly Order is rejected.")
MAX_OPEN_ORDERS = (-2025, "Reach max open order limit.")
CLIENT_ID_DUPLICATED = (-4116, "clientOrderId is duplicated")
POSITION_SIDE_MISMATCH = (-4061, "Order's position side does not match user's setting.")
PRICE_ABOVE_CAP = (-4016, "Price is higher than mark price multiplier cap.")
PRICE_BELOW_FLOOR = (-4024, "Price is lower than mark price multiplier floor.")
PRICE_TICK = (-4014, "Price not increased by tick size.")
QTY_STEP = (-4023, "Qty not increased by step size.")
PRICE_LOW = (-4013, "Price less than min price.")
PRICE_HIGH = (-4002, "Price greater than max price.")
QTY_LOW = (-4003, "Quantity less than or equal to zero.")
QTY_HIGH = (-4005, "Quantity greater than max quantity.")
POST_ONLY_WOULD_TAKE = (-5022, "Due to the order could not be executed as maker, the Post Only order will be "
                                "rejected. The order will not be recorded in the order history")
LISTEN_KEY_UNKNOWN = (-1125, "This listenKey does not exist.")
LISTEN_KEY_TTL_MS = 60 * 60_000  # a listen key lives 60 minutes after its creation or last keep-alive
LEVERAGE_NOT_VALID = (-4028, "Leverage {} is not valid")
MARGIN_TYPE_SAME = (-4046, "No need to change margin type.")
MARGIN_TYPE_OPEN_ORDERS = (-4047, "Margin type cannot be changed if there exists open orders.")
MARGIN_TYPE_POSITION = (-4048, "Margin type cannot be changed if there exists position.")
POSITION_MODE_SAME = (-4059, "No need to change position side.")
POSITION_MODE_OPEN_ORDERS = (-4067, "Position side cannot be changed if there exists open orders.")
POSITION_MODE_POSITION = (-4068, "Position side cannot be changed if there exists position.")


def refused(rule: tuple[int, str], *args: object) -> SimError:
    code, msg = rule
    return SimError(code, msg.format(*args) if args else msg)


def min_notional_refused(notional: Decimal) -> SimError:
    return SimError(-4164, f"Order's notional must be no smaller than {notional.normalize():f} "
                           "(unless you choose reduce only).")


@dataclass(frozen=True)
class FuturesSpec(MarketSpec):
    """One USDⓈ-M perpetual ("BTC/USDT", served as BTCUSDT): the spot filters plus the futures
    ones. `min_notional` is MIN_NOTIONAL.notional; `multiplier_up`/`_down` are PERCENT_PRICE
    against the mark; `tiers` are the leverage brackets (floor, cap, mmr, max leverage)."""

    tiers: tuple = BTC_BRACKETS
    multiplier_up: Decimal = Decimal("1.05")
    multiplier_down: Decimal = Decimal("0.95")
    liquidation_fee: Decimal = Decimal("0.0125")
    max_open_orders: int = 200
    brackets: tuple[margin.Bracket, ...] = field(init=False, default=())

    def __post_init__(self) -> None:
        super().__post_init__()
        for name in ("multiplier_up", "multiplier_down", "liquidation_fee"):
            self._set_decimal(name)
        object.__setattr__(self, "brackets", margin.brackets(self.tiers))
        if not self.multiplier_down < 1 < self.multiplier_up:
            raise ValueError(f"{self.symbol}: PERCENT_PRICE multipliers must lie either side of 1")

    @property
    def max_leverage(self) -> int:
        return self.brackets[0].max_leverage


def futures_market(symbol: str, price: DecimalLike | None = None, **overrides) -> FuturesSpec:
    """A perpetual with Binance-like filters: BTC and ETH as Binance lists them, others from the price."""
    base, _ = split_symbol(symbol)
    presets: dict[str, dict] = {
        "BTC": dict(price=Decimal("60000"), tick=Decimal("0.10"), step=Decimal("0.001"),
                    min_notional=Decimal("100"), max_qty=Decimal("1000"), tiers=BTC_BRACKETS),
        "ETH": dict(price=Decimal("3000"), tick=Decimal("0.01"), step=Decimal("0.001"),
                    min_notional=Decimal("20"), max_qty=Decimal("10000"), tiers=ALT_BRACKETS),
    }
    values = dict(presets.get(base, dict(tick=Decimal("0.001"), step=Decimal("0.1"), min_notional=Decimal("5"),
                                         tiers=ALT_BRACKETS)))
    if price is not None:
        values["price"] = to_decimal(price, f"{symbol} price")
    values.update(overrides)
    return FuturesSpec(symbol, **values)


def default_futures_markets() -> list[MarketSpec]:
    return [futures_market("BTC/USDT"), futures_market("ETH/USDT")]


@dataclass
class FuturesConfig(SimConfig):
    """A USDⓈ-M account: Binance's fapi limits (2,400 request weight a minute per IP, 300 orders
    per 10 s and 1,200 a minute per account), VIP0 fees, a USDT wallet, the mark basis and the
    funding rate charged at every `funding_interval_ms` boundary of the path's time."""

    markets: list[MarketSpec] = field(default_factory=default_futures_markets)
    balances: dict[str, Decimal] = field(default_factory=lambda: {"USDT": Decimal("10000")})
    maker_fee: Decimal = Decimal("0.0002")
    taker_fee: Decimal = Decimal("0.0005")
    weight_limit: int = 2400
    order_limit_10s: int = 300
    order_limit_minute: int = 1200
    default_leverage: int = 20
    mark_basis: Decimal = Decimal("0")
    funding_rate: Decimal = Decimal("0.0001")
    funding_interval_ms: int = FUNDING_INTERVAL_MS
    hedge_mode: bool = False

    def __post_init__(self) -> None:
        super().__post_init__()
        if not all(isinstance(spec, FuturesSpec) for spec in self.markets):
            raise ValueError("futures markets must be FuturesSpec (see futures_market())")
        self.mark_basis = to_decimal(self.mark_basis, "mark_basis")
        self.funding_rate = to_decimal(self.funding_rate, "funding_rate")
        if not -1 < self.mark_basis < 1:
            raise ValueError("mark_basis must lie between -1 and 1")
        if self.funding_interval_ms <= 0 or self.order_limit_minute <= 0:
            raise ValueError("funding_interval_ms and order_limit_minute must be positive")
        if not 1 <= self.default_leverage <= 125:
            raise ValueError("default_leverage must be from 1 to 125")


@dataclass
class PositionState:
    leverage: int
    margin_type: str = CROSSED
    position: margin.Position = field(default_factory=margin.Position)
    updated: int = 0


@dataclass(frozen=True)
class Income:
    tran_id: int
    symbol: str
    income_type: str  # FUNDING_FEE
    income: Decimal  # signed: negative is paid
    asset: str
    time: int


@dataclass(frozen=True)
class FundingRate:
    symbol: str
    rate: Decimal
    funding_time: int
    mark: Decimal


@dataclass(frozen=True)
class FuturesTrade:
    trade: Trade
    realized_pnl: Decimal


@dataclass(frozen=True)
class PositionView:
    """One position as positionRisk reports it, computed at the current mark."""

    symbol: str
    qty: Decimal
    entry: Decimal
    mark: Decimal
    unrealized: Decimal
    notional: Decimal
    leverage: int
    margin_type: str
    initial_margin: Decimal
    maint_margin: Decimal
    isolated_wallet: Decimal
    liquidation_price: Decimal | None
    updated: int


@dataclass(frozen=True)
class AccountView:
    wallet: Decimal
    unrealized: Decimal
    margin_balance: Decimal
    position_margin: Decimal
    open_order_margin: Decimal
    maint_margin: Decimal
    available: Decimal


class FuturesEngine(Engine):
    """The spot engine's markets, paths and matching with a USDⓈ-M account in place of balances."""

    config: FuturesConfig

    def __init__(self, config: FuturesConfig | None = None, clock: Callable[[], int] = now_ms) -> None:
        super().__init__(config or FuturesConfig(), clock=clock)
        self._fresh_account()

    def _fresh_account(self) -> None:
        config = self.config
        self._wallet = to_decimal(config.balances.get("USDT", ZERO), "USDT wallet")
        self._positions = {spec.market_id: PositionState(min(config.default_leverage,
                                                              _futures_spec(spec).max_leverage))
                           for spec in config.markets}
        self._reduce_only: set[int] = set()
        self._realized: dict[int, Decimal] = {}  # trade id -> the exchange's realizedPnl
        self._income: list[Income] = []
        self._funding: list[FundingRate] = []
        self._next_tran_id = 1
        self._hedge_mode = config.hedge_mode
        self.mark_basis = config.mark_basis
        self.funding_rate = config.funding_rate
        self._next_funding = {market_id: self._funding_after(m.path.current.open_time)
                              for market_id, m in self._state.markets.items()}
        self._listen_key: tuple[str, int] | None = None  # (key, expires at ms)

    def reset(self) -> None:
        with self._lock:
            super().reset()
            self._fresh_account()

    def _funding_after(self, time_ms: int) -> int:
        interval = self.config.funding_interval_ms
        return (time_ms // interval + 1) * interval

    # ------------------------------------------------------------- market data

    def mark_price(self, symbol: str) -> Decimal:
        with self._lock:
            return self._mark(self._market(symbol))

    def next_funding_time(self, symbol: str) -> int:
        with self._lock:
            return self._next_funding[self._market(symbol).spec.market_id]

    def funding_history(self, symbol: str | None = None) -> list[FundingRate]:
        with self._lock:
            market_id = None if symbol is None else self._market(symbol).spec.market_id
            return [row for row in self._funding if market_id is None or row.symbol == market_id]

    def income(self, symbol: str | None = None, income_type: str | None = None) -> list[Income]:
        with self._lock:
            market_id = None if symbol is None else self._market(symbol).spec.market_id
            return [row for row in self._income if (market_id is None or row.symbol == market_id)
                    and (income_type is None or row.income_type == income_type)]

    def realized_pnl(self, trade_id: int) -> Decimal:
        with self._lock:
            return self._realized.get(trade_id, ZERO)

    def is_reduce_only(self, order_id: int) -> bool:
        with self._lock:
            return order_id in self._reduce_only

    def set_price(self, symbol: str, price: Decimal) -> list[Trade]:
        with self._lock:
            trades = super().set_price(symbol, price)
            self._liquidate_if_due()
            return trades

    def step(self, n: int = 1, symbol: str | None = None) -> list[Trade]:
        """Advance the paths by `n` candles: fills, then funding at every boundary the path's time
        crosses, then liquidation at the new mark."""
        if n < 0:
            raise ValueError("n must not be negative")
        with self._lock:
            trades: list[Trade] = []
            for _ in range(n):
                trades += super().step(1, symbol)
                self._fund_due()
                self._liquidate_if_due()
            return trades

    def set_mark_basis(self, basis: DecimalLike) -> None:
        basis = to_decimal(basis, "mark_basis")
        if not -1 < basis < 1:
            raise ValueError("mark_basis must lie between -1 and 1")
        with self._lock:
            self.mark_basis = basis
            self._liquidate_if_due()

    def set_funding_rate(self, rate: DecimalLike) -> None:
        rate = to_decimal(rate, "funding_rate")
        with self._lock:
            self.funding_rate = rate

    def fund_now(self, symbol: str | None = None) -> list[Income]:
        """Charge funding at the current rate and mark now, out of the path's schedule."""
        with self._lock:
            markets = [self._market(symbol)] if symbol else list(self._state.markets.values())
            return [row for m in markets if (row := self._fund(m, self._clock()))]

    # ----------------------------------------------------------------- user-data stream

    def open_listen_key(self) -> str:
        """POST /fapi/v1/listenKey: the account's key (the active one, extended, if there is one)."""
        with self._lock:
            key = self.listen_key() or secrets.token_hex(32)
            self._listen_key = (key, self._clock() + LISTEN_KEY_TTL_MS)
            return key

    def keep_listen_key(self) -> str:
        """PUT /fapi/v1/listenKey: another 60 minutes for the active key."""
        with self._lock:
            key = self.listen_key()
            if key is None:
                raise refused(LISTEN_KEY_UNKNOWN)
            self._listen_key = (key, self._clock() + LISTEN_KEY_TTL_MS)
            return key

    def close_listen_key(self) -> None:
        """DELETE /fapi/v1/listenKey, or its expiry: the stream on that key ends."""
        with self._lock:
            self._listen_key = None

    def listen_key(self) -> str | None:
        """The active listen key, if any."""
        with self._lock:
            if self._listen_key is None or self._clock() >= self._listen_key[1]:
                return None
            return self._listen_key[0]

    # ----------------------------------------------------------------- account

    def account(self) -> AccountView:
        with self._lock:
            return self._account_view()

    def positions(self) -> list[PositionView]:
        with self._lock:
            return [self._position_view(self._state.markets[market_id]) for market_id in self._positions]

    def position(self, symbol: str) -> PositionView:
        with self._lock:
            return self._position_view(self._market(symbol))

    def leverage(self, symbol: str) -> tuple[int, str]:
        with self._lock:
            state = self._positions[self._market(symbol).spec.market_id]
            return state.leverage, state.margin_type

    def set_leverage(self, symbol: str, leverage: int) -> int:
        with self._lock:
            market = self._market(symbol)
            spec = _spec(market)
            if not 1 <= leverage <= spec.max_leverage:
                raise refused(LEVERAGE_NOT_VALID, leverage)
            self._positions[spec.market_id].leverage = leverage
            return leverage

    def set_margin_type(self, symbol: str, margin_type: str) -> None:
        if margin_type not in (CROSSED, ISOLATED):
            raise SimError(-4044, "The margin type cannot be recognized.")
        with self._lock:
            market = self._market(symbol)
            state = self._positions[market.spec.market_id]
            if state.margin_type == margin_type:
                raise refused(MARGIN_TYPE_SAME)
            if any(o.symbol == market.spec.market_id for o in self._open_orders()):
                raise refused(MARGIN_TYPE_OPEN_ORDERS)
            if state.position.qty:
                raise refused(MARGIN_TYPE_POSITION)
            state.margin_type = margin_type

    @property
    def hedge_mode(self) -> bool:
        return self._hedge_mode

    def set_hedge_mode(self, hedged: bool) -> None:
        with self._lock:
            if hedged == self._hedge_mode:
                raise refused(POSITION_MODE_SAME)
            if self._open_orders():
                raise refused(POSITION_MODE_OPEN_ORDERS)
            if any(state.position.qty for state in self._positions.values()):
                raise refused(POSITION_MODE_POSITION)
            self._hedge_mode = hedged

    def set_wallet(self, amount: DecimalLike) -> None:
        """Set the USDT wallet balance (a transfer in or out of band)."""
        amount = to_decimal(amount, "wallet")
        if amount < 0:
            raise ValueError("the wallet must not be negative")
        with self._lock:
            self._wallet = amount

    # ------------------------------------------------------------------ orders

    def place_order(self, symbol: str, side: str, order_type: str, quantity: Decimal, price: Decimal,
                    client_order_id: str | None = None, *, foreign: bool = False,
                    time_in_force: str = GTC, reduce_only: bool = False,
                    position_side: str = "BOTH") -> tuple[Order, list[Trade]]:
        """Accept a LIMIT order (GTC, or GTX for post-only); returns it with the fills it took."""
        quantity, price = to_decimal(quantity, "quantity"), to_decimal(price, "price")
        with self._lock:
            market = self._market(symbol)
            self._check_futures_order(market, side, order_type, quantity, price, client_order_id,
                                      time_in_force, reduce_only, position_side)
            order = self._new_order(market, side, order_type, quantity, price, client_order_id, foreign)
            order.time_in_force = time_in_force
            if reduce_only:
                self._reduce_only.add(order.order_id)
            trades = []
            if self._crosses(market, side, price):
                trades.append(self._execute(market, order, order.orig_qty, is_maker=False))
            return replace(order), trades

    def validate_order(self, symbol: str, side: str, order_type: str, quantity: Decimal, price: Decimal,
                       client_order_id: str | None = None) -> MarketSpec:
        raise SimError(errors.UNKNOWN, "No test orders on this market.")

    def _check_futures_order(self, market: _Market, side: str, order_type: str, quantity: Decimal,
                             price: Decimal, client_order_id: str | None, time_in_force: str,
                             reduce_only: bool, position_side: str) -> None:
        spec = _spec(market)
        if side not in (BUY, SELL):
            raise SimError(errors.INVALID_SIDE, "Invalid side.")
        if order_type != LIMIT:
            raise SimError(errors.INVALID_ORDER_TYPE, "Invalid orderType.")
        if time_in_force not in (GTC, GTX):
            raise SimError(errors.INVALID_TIF, "Invalid timeInForce.")
        if client_order_id is not None and not _CLIENT_ID_RE.match(client_order_id):
            raise SimError(-4015, "Client order id is not valid.")
        if price < spec.min_price:
            raise refused(PRICE_LOW)
        if price > spec.max_price:
            raise refused(PRICE_HIGH)
        if (price - spec.min_price) % spec.tick:
            raise refused(PRICE_TICK)
        if quantity <= 0 or quantity < spec.min_qty:
            raise refused(QTY_LOW)
        if quantity > spec.max_qty:
            raise refused(QTY_HIGH)
        if (quantity - spec.min_qty) % spec.step:
            raise refused(QTY_STEP)
        mark = self._mark(market)
        if side == BUY and price > mark * spec.multiplier_up:
            raise refused(PRICE_ABOVE_CAP)
        if side == SELL and price < mark * spec.multiplier_down:
            raise refused(PRICE_BELOW_FLOOR)
        if not reduce_only and price * quantity < spec.min_notional:
            raise min_notional_refused(spec.min_notional)
        if self._hedge_mode or position_side != "BOTH":
            raise refused(POSITION_SIDE_MISMATCH)
        state = self._positions[spec.market_id]
        held = state.position.qty
        if reduce_only:
            reduces = held < 0 if side == BUY else held > 0
            if not reduces:
                raise refused(REDUCE_ONLY_REJECTED)
        if client_order_id is not None and self._open_with_client_id(client_order_id):
            raise refused(CLIENT_ID_DUPLICATED)
        if sum(1 for o in self._open_orders() if o.symbol == spec.market_id) >= spec.max_open_orders:
            raise refused(MAX_OPEN_ORDERS)
        if time_in_force == GTX and self._crosses(market, side, price):
            raise refused(POST_ONLY_WOULD_TAKE)
        if not reduce_only:
            needed = margin.initial_margin(price * quantity, state.leverage)
            if self._crosses(market, side, price):
                needed += price * quantity * self.config.taker_fee
            if needed > self._account_view().available:
                raise refused(MARGIN_INSUFFICIENT)

    def _cancel(self, order: Order, status: str = "CANCELED") -> None:
        self._close(order, status)  # margin is computed from the open orders, nothing is locked

    def _fill_chunk(self, market: _Market, order: Order) -> Decimal:
        """A reduce-only order fills at most what is left of the position; with nothing left it expires."""
        chunk = super()._fill_chunk(market, order)
        if order.order_id not in self._reduce_only:
            return chunk
        room = self._room(order)
        if not room:
            self._close(order, "EXPIRED")
        return min(chunk, room)

    def _room(self, order: Order) -> Decimal:
        held = self._positions[order.symbol].position.qty
        reduces = held < 0 if order.side == BUY else held > 0
        return abs(held) if reduces else ZERO

    def _execute(self, market: _Market, order: Order, qty: Decimal, is_maker: bool) -> Trade:
        """Fill `qty` of `order` at its price into the position; fees and realised PnL to the wallet."""
        spec = market.spec
        state = self._positions[spec.market_id]
        reduce_only = order.order_id in self._reduce_only
        if reduce_only:
            qty = min(qty, self._room(order))
        quote_qty = order.price * qty
        rate = self.config.maker_fee if is_maker else self.config.taker_fee
        commission = (quote_qty * rate).quantize(MONEY_UNIT, rounding=ROUND_HALF_UP)
        state.position, realized = margin.apply_fill(state.position, side=order.side.lower(), qty=qty,
                                                     price=order.price)
        state.updated = self._clock()
        self._wallet += realized - commission
        order.executed_qty += qty
        order.cumm_quote_qty += quote_qty
        order.update_time = self._clock()
        if order.remaining == 0:
            self._close(order, FILLED)
        elif reduce_only and not self._room(order):
            self._close(order, "EXPIRED")  # the position is closed: the rest could only open one
        else:
            order.status = "PARTIALLY_FILLED"
        trade = self._record_trade(order, qty, quote_qty, commission, spec.quote, is_maker)
        self._realized[trade.trade_id] = realized
        return trade

    # --------------------------------------------------------------- internals

    def _mark(self, market: _Market) -> Decimal:
        return round_to(market.path.price * (1 + self.mark_basis), market.spec.tick)

    def _position_view(self, market: _Market) -> PositionView:
        spec = _spec(market)
        state = self._positions[spec.market_id]
        pos, mark = state.position, self._mark(market)
        notional = pos.qty * mark
        isolated_wallet = (abs(pos.qty) * pos.entry / state.leverage if state.margin_type == ISOLATED
                           else ZERO)
        if state.margin_type == ISOLATED:
            wallet, others_mm, others_upnl = isolated_wallet, ZERO, ZERO
        else:
            wallet = self._wallet
            others_mm, others_upnl = margin.cross_terms(
                (s.position.qty, s.position.entry, self._mark(self._state.markets[mid]), _spec(self._state.markets[mid]).brackets)
                for mid, s in self._positions.items()
                if mid != spec.market_id and s.margin_type == CROSSED and s.position.qty)
        liquidation = margin.liquidation_price(wallet=wallet, qty=pos.qty, entry=pos.entry, tiers=spec.brackets,
                                               others_maintenance=others_mm, others_unrealized=others_upnl)
        return PositionView(
            symbol=spec.market_id, qty=pos.qty, entry=pos.entry, mark=mark,
            unrealized=margin.unrealized_pnl(pos.qty, pos.entry, mark), notional=notional,
            leverage=state.leverage, margin_type=state.margin_type,
            initial_margin=margin.initial_margin(notional, state.leverage),
            maint_margin=margin.maintenance_margin(notional, spec.brackets), isolated_wallet=isolated_wallet,
            liquidation_price=None if liquidation is None else round_to(liquidation, spec.tick),
            updated=state.updated)

    def _account_view(self) -> AccountView:
        unrealized = position_margin = order_margin = maint = ZERO
        for market_id, state in self._positions.items():
            market = self._state.markets[market_id]
            pos = state.position
            if pos.qty:
                mark = self._mark(market)
                unrealized += margin.unrealized_pnl(pos.qty, pos.entry, mark)
                position_margin += margin.initial_margin(pos.qty * mark, state.leverage)
                maint += margin.maintenance_margin(pos.qty * mark, _spec(market).brackets)
        for order in self._open_orders():
            if order.order_id not in self._reduce_only:
                leverage = self._positions[order.symbol].leverage
                order_margin += margin.initial_margin(order.price * order.remaining, leverage)
        balance = self._wallet + unrealized
        return AccountView(wallet=self._wallet, unrealized=unrealized, margin_balance=balance,
                           position_margin=position_margin, open_order_margin=order_margin, maint_margin=maint,
                           available=max(ZERO, balance - position_margin - order_margin))

    def _fund_due(self) -> None:
        for market_id, market in self._state.markets.items():
            now = market.path.current.open_time
            while now >= self._next_funding[market_id]:
                self._fund(market, self._next_funding[market_id])
                self._next_funding[market_id] += self.config.funding_interval_ms

    def _fund(self, market: _Market, at_ms: int) -> Income | None:
        spec = market.spec
        mark = self._mark(market)
        self._funding.append(FundingRate(spec.market_id, self.funding_rate, at_ms, mark))
        qty = self._positions[spec.market_id].position.qty
        if not qty:
            return None
        amount = margin.funding_income(qty, mark, self.funding_rate).quantize(MONEY_UNIT, rounding=ROUND_HALF_UP)
        self._wallet += amount
        # Booked in the account's history at the engine's clock, as its trades are; the rate history
        # keeps the funding time of the path.
        row = Income(self._next_tran_id, spec.market_id, "FUNDING_FEE", amount, spec.quote, self._clock())
        self._next_tran_id += 1
        self._income.append(row)
        return row

    def _liquidate_if_due(self) -> None:
        """Close at mark every position whose margin no longer covers its maintenance margin:
        isolated ones one by one, cross ones all together when the account's does not."""
        for market_id, state in self._positions.items():
            if state.margin_type == ISOLATED and state.position.qty:
                view = self._position_view(self._state.markets[market_id])
                if view.isolated_wallet + view.unrealized <= view.maint_margin:
                    self._liquidate(self._state.markets[market_id])
        account = self._account_view()
        cross = [mid for mid, s in self._positions.items() if s.margin_type == CROSSED and s.position.qty]
        if cross and account.margin_balance <= account.maint_margin:
            for market_id in cross:
                self._liquidate(self._state.markets[market_id])

    def _liquidate(self, market: _Market) -> None:
        spec = _spec(market)
        state = self._positions[spec.market_id]
        for order in [o for o in self._open_orders() if o.symbol == spec.market_id]:
            self._close(order, "CANCELED")
        qty, mark = state.position.qty, self._mark(market)
        side = SELL if qty > 0 else BUY
        order = self._new_order(market, side, LIMIT, abs(qty), mark, f"autoclose-{self._clock()}", True)
        order.time_in_force = "IOC"
        self._reduce_only.add(order.order_id)
        self._execute(market, order, abs(qty), is_maker=False)
        fee = (abs(qty) * mark * spec.liquidation_fee).quantize(MONEY_UNIT, rounding=ROUND_HALF_UP)
        self._wallet = max(ZERO, self._wallet - fee)


def _futures_spec(spec: MarketSpec) -> FuturesSpec:
    if not isinstance(spec, FuturesSpec):
        raise TypeError(f"{spec.symbol} is not a futures market")
    return spec


def _spec(market: _Market) -> FuturesSpec:
    return _futures_spec(market.spec)

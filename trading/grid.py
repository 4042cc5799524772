"""Grid math: the lattice, the buy and sell windows, order sizing, rounding and cleanup choice.

Pure functions over ``Decimal``: no I/O, no Django, no float. Every rounding of a price or an
amount in the project goes through :func:`round_price` or :func:`round_amount_down`.

The grid in one paragraph. A symbol's prices live on a lattice ``anchor + level * interval``
(level 0 is the anchor, levels below it are negative). A *slot* is one level. An empty slot in
the buy window gets a limit buy at its own price; once the buy has filled, the slot holds
inventory and gets a limit sell one level up (``level + 1``). When that sell fills the slot is
empty again and the level can be bought anew. Orders are keyed by the slot level and the side,
so a sell carries the level of the buy that created it.

Rounding rules:

* prices: to the nearest multiple of the tick, ties half up (towards +infinity). Never banker's
  rounding: a price rounds the same way whatever its neighbours are;
* amounts: always down to the step, so an order never spends more than configured and a sell
  never offers more than the slot holds;
* nearest level (:meth:`Lattice.level_of`): measured on the exact lattice
  ``anchor + level * interval``; a price exactly half way between two levels belongs to the
  upper one.

Arithmetic is exact: divisions and roundings go through ``fractions.Fraction``, and products and
sums use a wide Decimal context that raises instead of rounding silently.
"""
from __future__ import annotations

import bisect
import functools
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from decimal import Context, Decimal, DivisionByZero, Inexact, InvalidOperation, Overflow
from fractions import Fraction
from typing import Final, Literal

BUY: Final = "buy"
SELL: Final = "sell"
Side = Literal["buy", "sell"]
SIDES: tuple[Side, ...] = (BUY, SELL)

# Why a candidate order was not placed (``Skipped.reason``).
ZERO_AMOUNT = "zero_amount"  # the amount rounds down to nothing
BELOW_MIN_QTY = "below_min_qty"  # exchange minimum quantity
BELOW_MIN_ORDER_VALUE = "below_min_order_value"  # grid parameter min_order_value
BELOW_MIN_NOTIONAL = "below_min_notional"  # exchange minimum notional
ORDER_CAP = "order_cap"  # order_cleanup_threshold live orders reached
MAX_GRID_LAYERS = "max_grid_layers"  # max_grid_layers slots already hold or may soon hold inventory
BUYS_PAUSED = "buys_paused"  # the caller paused buying

# A buy must sit below, and a sell above, the current price by this fraction of the interval.
BUFFER_FRACTION = Decimal("0.1")

_ZERO = Decimal("0")
_HALF = Fraction(1, 2)
# Products and sums of money: wide enough for any price times any amount, and trapping
# ``Inexact`` so that a silent rounding would raise instead.
_EXACT = Context(prec=100, traps=[InvalidOperation, DivisionByZero, Overflow, Inexact])
_WIDE = Context(prec=60, traps=[InvalidOperation, DivisionByZero, Overflow])  # divisions that may not end
_DECIMAL_HALF = Decimal("0.5")


# --------------------------------------------------------------------------- validation


def _require_decimal(name: str, value: object) -> Decimal:
    if not isinstance(value, Decimal) or not value.is_finite():
        raise TypeError(f"{name} must be a finite Decimal, got {value!r}")
    return value


def _require_positive(name: str, value: object) -> None:
    if _require_decimal(name, value) <= 0:
        raise ValueError(f"{name} must be positive, got {value}")


def _require_non_negative(name: str, value: object) -> None:
    if _require_decimal(name, value) < 0:
        raise ValueError(f"{name} must not be negative, got {value}")


def _require_int(name: str, value: object, minimum: int | None = None) -> None:
    if not isinstance(value, int) or isinstance(value, bool):
        raise TypeError(f"{name} must be an int, got {value!r}")
    if minimum is not None and value < minimum:
        raise ValueError(f"{name} must be at least {minimum}, got {value}")


def _require_side(value: object) -> None:
    if value not in SIDES:
        raise ValueError(f"side must be 'buy' or 'sell', got {value!r}")


# --------------------------------------------------------------------------- rounding


def _distance(a: Decimal, b: Decimal) -> Decimal:
    """``|a - b|``, exact."""
    return _EXACT.abs(_EXACT.subtract(a, b))


def _to_multiple(value: Fraction, unit: Decimal, *, nearest: bool) -> Decimal:
    """``value`` as a multiple of ``unit``: nearest (ties up) or floor. Exact."""
    units = value / Fraction(unit)
    count = math.floor(units + _HALF) if nearest else math.floor(units)
    result = _EXACT.multiply(Decimal(count), unit)
    exponent = result.as_tuple().exponent  # an int: the result is finite
    if isinstance(exponent, int) and exponent > 0:  # a unit such as 1E+1: show 20, not 2E+1
        result = result.quantize(Decimal(1), context=_EXACT)
    return result


def round_price(price: Decimal, tick: Decimal) -> Decimal:
    """``price`` rounded to the nearest multiple of ``tick``, ties half up (towards +infinity).

    The result carries the tick's decimal places: ``round_price(Decimal("2998"), Decimal("0.01"))``
    is ``Decimal("2998.00")``.
    """
    _require_decimal("price", price)
    _require_positive("tick", tick)
    return _to_multiple(Fraction(price), tick, nearest=True)


def round_amount_down(amount: Decimal, step: Decimal) -> Decimal:
    """``amount`` rounded down to a multiple of ``step`` (never up)."""
    _require_non_negative("amount", amount)
    _require_positive("step", step)
    return _to_multiple(Fraction(amount), step, nearest=False)


@functools.lru_cache(maxsize=4096)
def _amount_down(amount: Decimal, step: Decimal) -> Decimal:
    """`round_amount_down` for the holdings a plan looks at again on every call."""
    return round_amount_down(amount, step)


def anchor_for(price: Decimal, tick: Decimal) -> Decimal:
    """The lattice anchor for a symbol's first observed price: the price snapped to the tick.

    Computed once per symbol; the caller persists it so restarts keep the same levels.
    """
    anchor = round_price(price, tick)
    if anchor <= 0:
        raise ValueError(f"price {price} rounds to a non-positive anchor with tick {tick}")
    return anchor


def safety_buffer(interval: Decimal) -> Decimal:
    """Distance a buy keeps below (and a sell above) the current price: a tenth of the interval."""
    _require_positive("interval", interval)
    return _EXACT.multiply(interval, BUFFER_FRACTION)


# --------------------------------------------------------------------------- lattice


@functools.lru_cache(maxsize=65536)
def _level_price(anchor: Decimal, interval: Decimal, tick: Decimal, level: int) -> Decimal:
    exact = Fraction(anchor) + level * Fraction(interval)
    return _to_multiple(exact, tick, nearest=True)


@dataclass(frozen=True)
class Lattice:
    """The price levels of one symbol: ``price(level) = anchor + level * interval``, on the tick.

    The anchor must already sit on the tick (use :func:`anchor_for`); if the exchange changes
    the tick size, the symbol needs a new anchor. The interval must be at least one tick so that
    every level has its own price; it need not be a multiple of the tick.
    """

    anchor: Decimal
    interval: Decimal
    tick: Decimal

    def __post_init__(self) -> None:
        _require_positive("anchor", self.anchor)
        _require_positive("interval", self.interval)
        _require_positive("tick", self.tick)
        if round_price(self.anchor, self.tick) != self.anchor:
            raise ValueError(f"anchor {self.anchor} is not a multiple of tick {self.tick}; use anchor_for()")
        if self.interval < self.tick:
            raise ValueError(f"interval {self.interval} is smaller than tick {self.tick}")

    def price(self, level: int) -> Decimal:
        """Price of ``level``, rounded to the tick (may be zero or negative far below the anchor)."""
        _require_int("level", level)
        return _level_price(self.anchor, self.interval, self.tick, level)

    def level_of(self, price: Decimal) -> int:
        """The level nearest to ``price`` on the exact lattice; half way between two levels: the upper."""
        _require_decimal("price", price)
        # 60 digits hold every offset exactly enough: an exact half stays exact, and the nearest
        # inexact quotient is farther from a half than the rounding can reach.
        offset = _WIDE.divide(_WIDE.subtract(price, self.anchor), self.interval)
        return math.floor(_WIDE.add(offset, _DECIMAL_HALF))

    def lowest_level_above(self, price: Decimal) -> int:
        """The lowest level whose (tick-rounded) price is strictly above ``price``."""
        level = self.level_of(price)
        while self.price(level) <= price:
            level += 1
        while self.price(level - 1) > price:
            level -= 1
        return level


# --------------------------------------------------------------------------- inputs and outputs


@dataclass(frozen=True)
class GridParams:
    """A symbol's grid parameters (names as in the QuantMesh config)."""

    interval: Decimal
    order_quantity: Decimal  # quote currency spent per buy, e.g. 30 USDT
    min_order_value: Decimal  # smallest notional (price * amount) the grid will send
    buy_window_size: int
    sell_window_size: int
    order_cleanup_threshold: int  # most live orders at once
    max_grid_layers: int = 0  # most slots holding (or buying) inventory at once; 0: no limit

    def __post_init__(self) -> None:
        _require_positive("interval", self.interval)
        _require_positive("order_quantity", self.order_quantity)
        _require_non_negative("min_order_value", self.min_order_value)
        _require_int("buy_window_size", self.buy_window_size, minimum=1)
        _require_int("sell_window_size", self.sell_window_size, minimum=1)
        _require_int("order_cleanup_threshold", self.order_cleanup_threshold, minimum=1)
        _require_int("max_grid_layers", self.max_grid_layers, minimum=0)


@dataclass(frozen=True)
class MarketRules:
    """The exchange's order filters for a symbol, as the grid rounds and checks orders by them
    (the exchange layer's `ListedMarket` carries them with the market's ids and currencies)."""

    tick: Decimal  # price increment
    step: Decimal  # amount increment
    min_notional: Decimal = _ZERO
    min_qty: Decimal = _ZERO

    def __post_init__(self) -> None:
        _require_positive("tick", self.tick)
        _require_positive("step", self.step)
        _require_non_negative("min_notional", self.min_notional)
        _require_non_negative("min_qty", self.min_qty)


@dataclass(frozen=True)
class SlotView:
    """A slot's inventory: the base amount its filled buys hold and that is not yet sold."""

    level: int
    holding: Decimal = _ZERO

    def __post_init__(self) -> None:
        _require_int("level", self.level)
        _require_non_negative("holding", self.holding)


@dataclass(frozen=True)
class LiveOrderView:
    """An order that is live (or may be) at the exchange. ``level`` is its slot's level."""

    side: Side
    level: int
    price: Decimal
    filled: Decimal = _ZERO  # amount already filled
    ref: str = ""  # the caller's handle, e.g. the client order id

    def __post_init__(self) -> None:
        _require_side(self.side)
        _require_int("level", self.level)
        _require_positive("price", self.price)
        _require_non_negative("filled", self.filled)


@dataclass(frozen=True)
class DesiredOrder:
    """An order the grid wants placed. ``level`` is the slot level; a sell's price is a level up."""

    side: Side
    level: int
    price: Decimal
    amount: Decimal


@dataclass(frozen=True)
class Skipped:
    """A candidate order that was not placed, and why (one of the reason constants)."""

    side: Side
    level: int
    reason: str


@dataclass(frozen=True)
class GridPlan:
    """Result of :func:`desired_orders`: orders to place in priority order, and the skipped ones."""

    orders: tuple[DesiredOrder, ...]
    skipped: tuple[Skipped, ...]


# --------------------------------------------------------------------------- windows and sizing


def buy_window(lattice: Lattice, price: Decimal, size: int) -> list[int]:
    """Levels that may hold a buy, top to bottom.

    The window is the ``size`` levels at and below the level nearest to ``price``. Of those, a
    level qualifies only if its price is positive and strictly below ``price - interval / 10``,
    so a window can yield fewer than ``size`` levels.
    """
    _require_positive("price", price)
    _require_int("size", size, minimum=0)
    limit = _EXACT.subtract(price, safety_buffer(lattice.interval))
    top = lattice.level_of(price)
    levels = []
    for level in range(top, top - size, -1):
        level_price = lattice.price(level)
        if level_price <= 0:
            break  # every lower level is non-positive too
        if level_price < limit:
            levels.append(level)
    return levels


def sell_price(lattice: Lattice, level: int, price: Decimal) -> Decimal:
    """Sell price for the slot at ``level``: the price of ``level + 1``.

    If that price is not strictly above ``price + interval / 10`` (the market has already passed
    it, e.g. the sell could not be placed in time), the sell goes to the lowest level that is, so
    it rests on the book as a maker order instead of being rejected as post-only. The sell never
    goes below ``level + 1``.
    """
    return lattice.price(max(level + 1, lowest_resting_sell(lattice, price)))


def lowest_resting_sell(lattice: Lattice, price: Decimal) -> int:
    """The lowest level a sell may rest at: its price strictly above ``price + interval / 10``."""
    _require_positive("price", price)
    return lattice.lowest_level_above(_EXACT.add(price, safety_buffer(lattice.interval)))


def buy_amount(order_quantity: Decimal, price: Decimal, step: Decimal) -> Decimal:
    """Base amount a buy of ``order_quantity`` quote at ``price`` gets: rounded down to the step."""
    _require_positive("order_quantity", order_quantity)
    _require_positive("price", price)
    _require_positive("step", step)
    return _to_multiple(Fraction(order_quantity) / Fraction(price), step, nearest=False)


def skip_reason(price: Decimal, amount: Decimal, min_order_value: Decimal, rules: MarketRules) -> str | None:
    """Why an order of ``amount`` at ``price`` must not be sent, or None if it may.

    Checked in this order: zero amount, the exchange's minimum quantity, the grid's
    ``min_order_value``, the exchange's minimum notional. The same check serves buys and sells.
    """
    _require_positive("price", price)
    _require_non_negative("amount", amount)
    if amount == 0:
        return ZERO_AMOUNT
    if amount < rules.min_qty:
        return BELOW_MIN_QTY
    notional = _EXACT.multiply(price, amount)
    if notional < min_order_value:
        return BELOW_MIN_ORDER_VALUE
    if notional < rules.min_notional:
        return BELOW_MIN_NOTIONAL
    return None


# --------------------------------------------------------------------------- desired orders


@dataclass(frozen=True)
class _SellCandidate:
    level: int
    price: Decimal
    amount: Decimal
    live: bool


def desired_orders(
    params: GridParams,
    rules: MarketRules,
    lattice: Lattice,
    price: Decimal,
    slots: Iterable[SlotView],
    live_orders: Iterable[LiveOrderView],
    *,
    buys_paused: bool = False,
) -> GridPlan:
    """The orders to place now for one symbol, in priority order, and the candidates skipped.

    ``slots`` lists the slots holding inventory (others may be omitted); ``live_orders`` every
    live order of the symbol. A fill is seen in the same call: a slot that holds inventory and
    has no live order gets its sell right away.

    Rules:

    * a slot with a live order (either side) gets nothing new;
    * a slot is *sellable* when its holding, rounded down to the step, passes :func:`skip_reason`
      at its :func:`sell_price`. Sells go to the ``sell_window_size`` sellable slots nearest the
      price (by sell price; slots whose sell is already live count towards the window), nearest
      first. A holding too small to sell is dust: the slot counts as empty, so a new buy can top
      it up into a sellable amount;
    * buys go to the empty levels of :func:`buy_window`, top to bottom, sized by
      :func:`buy_amount`, unless ``buys_paused``;
    * ``max_grid_layers`` (if not 0) bounds the slots that hold sellable inventory or have a live
      order plus the new buys, so inventory stays within it even if every live buy fills;
    * at most ``order_cleanup_threshold`` live orders in all: new orders fill the room left,
      sells before buys (a sell takes inventory off the book, a buy adds to it).
    """
    _require_positive("price", price)
    if lattice.interval != params.interval:
        raise ValueError(f"lattice interval {lattice.interval} differs from the grid interval {params.interval}")
    if lattice.tick != rules.tick:
        raise ValueError(f"lattice tick {lattice.tick} differs from the exchange tick {rules.tick}")

    holdings: dict[int, Decimal] = {}
    for slot in slots:
        if slot.level in holdings:
            raise ValueError(f"slot level {slot.level} listed twice")
        holdings[slot.level] = slot.holding
    live_orders = list(live_orders)
    live_buy_levels = {order.level for order in live_orders if order.side == BUY}
    live_sell_prices = {order.level: order.price for order in live_orders if order.side == SELL}
    busy = live_buy_levels | set(live_sell_prices)

    orders: list[DesiredOrder] = []
    skipped: list[Skipped] = []
    room = max(0, params.order_cleanup_threshold - len(live_orders))

    # Sells: every slot with inventory and no live buy is a candidate.
    candidates: list[_SellCandidate] = []
    lowest_resting = lowest_resting_sell(lattice, price)  # sell_price's floor, the same for every slot
    for level in sorted(holdings):
        if level in live_buy_levels:
            continue  # a buy still filling: sell once it is done
        if level in live_sell_prices:
            candidates.append(_SellCandidate(level, live_sell_prices[level], _ZERO, live=True))
            continue
        holding = holdings[level]
        if holding == 0:
            continue
        target = lattice.price(max(level + 1, lowest_resting))
        amount = _amount_down(holding, rules.step)
        reason = skip_reason(target, amount, params.min_order_value, rules)
        if reason is None:
            candidates.append(_SellCandidate(level, target, amount, live=False))
        else:
            skipped.append(Skipped(SELL, level, reason))
    candidates.sort(key=lambda c: (_distance(c.price, price), c.price, c.level))
    for candidate in candidates[: params.sell_window_size]:
        if candidate.live:
            continue
        if room == 0:
            skipped.append(Skipped(SELL, candidate.level, ORDER_CAP))
            continue
        orders.append(DesiredOrder(SELL, candidate.level, candidate.price, candidate.amount))
        room -= 1

    # Buys: empty levels of the window, top to bottom.
    occupied = busy | {c.level for c in candidates}
    layers_left = None
    if params.max_grid_layers:
        layers_left = max(0, params.max_grid_layers - len(occupied))
    for level in buy_window(lattice, price, params.buy_window_size):
        if level in occupied:
            continue
        if buys_paused:
            skipped.append(Skipped(BUY, level, BUYS_PAUSED))
            continue
        level_price = lattice.price(level)
        amount = buy_amount(params.order_quantity, level_price, rules.step)
        reason = skip_reason(level_price, amount, params.min_order_value, rules)
        if reason is None and layers_left == 0:
            reason = MAX_GRID_LAYERS
        if reason is None and room == 0:
            reason = ORDER_CAP
        if reason is not None:
            skipped.append(Skipped(BUY, level, reason))
            continue
        orders.append(DesiredOrder(BUY, level, level_price, amount))
        room -= 1
        if layers_left is not None:
            layers_left -= 1

    return GridPlan(orders=tuple(orders), skipped=tuple(skipped))


def stale_buys(
    live_orders: Iterable[LiveOrderView],
    lattice: Lattice,
    price: Decimal,
    buy_window_size: int,
    margin: int = 0,
) -> list[LiveOrderView]:
    """Live buys more than ``margin`` levels below the bottom of the buy window, lowest first.

    The grid no longer wants them; the caller may cancel them. A margin of a few levels avoids
    cancelling and re-placing the same buy while the price wobbles around a level.
    """
    _require_positive("price", price)
    _require_int("buy_window_size", buy_window_size, minimum=1)
    _require_int("margin", margin, minimum=0)
    bottom = lattice.level_of(price) - (buy_window_size - 1)
    stale = [o for o in live_orders if o.side == BUY and o.level < bottom - margin]
    return sorted(stale, key=lambda o: (o.level, o.price, o.ref))


# --------------------------------------------------------------------------- cleanup and pnl


def cleanup_candidates(
    live_orders: Sequence[LiveOrderView],
    price: Decimal,
    threshold: int,
    batch_size: int,
) -> list[LiveOrderView]:
    """Orders to cancel when ``len(live_orders) >= threshold``: at most ``batch_size`` of them.

    Rule: buys first, farthest from the price first; sells only once no buy is left, again
    farthest first. A cancelled buy only frees quote currency and its level can be bought again
    later; a cancelled sell leaves the slot's inventory without an exit. Partly filled orders are
    never picked: cancelling them would leave a remainder that may be too small to trade.
    With ``buy_window_size + sell_window_size`` below the threshold, the farthest orders are
    outside both windows, so the grid does not place them again.
    """
    _require_positive("price", price)
    _require_int("threshold", threshold, minimum=1)
    _require_int("batch_size", batch_size, minimum=0)
    if len(live_orders) < threshold:
        return []
    eligible = [o for o in live_orders if o.filled == 0]
    eligible.sort(key=lambda o: (o.side != BUY, -_distance(o.price, price), o.level, o.ref))
    return eligible[:batch_size]


def round_trip_return(price: Decimal, interval: Decimal, fee: Decimal) -> Decimal:
    """What one round trip returns on its cost, fees paid: a buy at ``price`` (its fee taken
    from what it receives) sold one interval up (its fee taken from the proceeds), both at the
    fee rate ``fee``: ``(1 - fee)**2 * (price + interval) / price - 1``. Zero or less: the grid
    loses on every round trip. The higher the price, the less an interval is worth, so the
    highest price a grid will trade at is the one to check."""
    _require_positive("price", price)
    _require_positive("interval", interval)
    _require_non_negative("fee", fee)
    exact = (1 - Fraction(fee)) ** 2 * (Fraction(price) + Fraction(interval)) / Fraction(price) - 1
    return _to_multiple(exact, Decimal("1E-8"), nearest=False)


def lasting_cleanup(
    params: GridParams,
    rules: MarketRules,
    lattice: Lattice,
    price: Decimal,
    slots: Iterable[SlotView],
    live_orders: Sequence[LiveOrderView],
    batch_size: int,
    *,
    buys_paused: bool = False,
) -> list[LiveOrderView]:
    """:func:`cleanup_candidates` (in its order, at most ``batch_size``), less every order that
    :func:`desired_orders` would place again once the picked ones are gone. Cancelling such an
    order only churns: it frees room, the next plan fills that room with the same order, and the
    cap is reached again, a cancel and a new order per tick for as long as the price stays."""
    slots = list(slots)
    picked: list[LiveOrderView] = []
    for candidate in cleanup_candidates(live_orders, price, params.order_cleanup_threshold, len(live_orders)):
        if len(picked) == batch_size:
            break
        gone = {o.ref for o in picked} | {candidate.ref}
        rest = [o for o in live_orders if o.ref not in gone]
        again = desired_orders(params, rules, lattice, price, slots, rest, buys_paused=buys_paused).orders
        if not any(o.side == candidate.side and o.level == candidate.level for o in again):
            picked.append(candidate)
    return picked


def unprofitable_step(price: Decimal, interval: Decimal, fee: Decimal, tick: Decimal) -> str | None:
    """Why a grid of ``interval`` at ``price`` cannot make money at the fee rate ``fee``, with the
    numbers, or None when a round trip returns more than its fees (see
    :func:`round_trip_return`); the smallest interval that would is rounded up to the tick."""
    gain = round_trip_return(price, interval, fee)
    if gain > 0:
        return None
    exact = Fraction(price) * (1 / (1 - Fraction(fee)) ** 2 - 1)
    needed = _to_multiple(exact, tick, nearest=False) + tick
    share = _WIDE.divide(interval, price)
    return (f"this grid loses on every round trip: price_interval {interval} is {share * 100:.2f} % "
            f"of the price {price}, and a round trip pays the fee {fee * 100:.2f} % twice; each round trip returns "
            f"{gain * 100:.2f} % of its cost. Widen price_interval (above {needed})")


# --------------------------------------------------------------------------- quiet prices
def steady_band(lattice: Lattice, price: Decimal) -> tuple[Decimal, Decimal]:
    """The open price range around ``price`` in which the grid decides the same as at ``price``.

    For a price ``q`` strictly between the two bounds, :func:`desired_orders`,
    :func:`stale_buys`, :func:`cleanup_candidates` and :func:`lasting_cleanup` give what they
    give at ``price``, for
    every state in which each live buy is below and each live sell above both prices (a price
    path that filled nothing leaves such a state). Those functions look at the price only
    through the nearest level (which changes half way between levels), the buy window's
    ``level price < price - buffer`` and the sell's ``level price > price + buffer``; the
    bounds are the nearest such edges below and above. When ``price`` sits on an edge, the
    range is empty (``(price, price)``).
    """
    _require_positive("price", price)
    exact = Fraction(price)
    edges, lower, upper = _band_edges(lattice, lattice.level_of(price))
    at = bisect.bisect_left(edges, exact)
    if edges[at] == exact:
        return price, price
    return lower[at - 1], upper[at]


@functools.lru_cache(maxsize=4096)
def _band_edges(lattice: Lattice, level: int) -> tuple[list[Fraction], list[Decimal], list[Decimal]]:
    """The edges around the prices nearest ``level``, sorted, exact and as Decimals on the safe
    side: rounded up when used as a lower bound, down as an upper one."""
    buffer = Fraction(safety_buffer(lattice.interval))
    half = Fraction(lattice.interval) / 2
    level_price = Fraction(lattice.anchor) + level * Fraction(lattice.interval)
    found = {level_price - half, level_price + half}
    for m in range(level - 2, level + 3):
        found |= {Fraction(lattice.price(m)) - buffer, Fraction(lattice.price(m)) + buffer}
    edges = sorted(found)
    return edges, [_fraction_to_decimal(e, floor=False) for e in edges], [_fraction_to_decimal(e, floor=True) for e in edges]


def _fraction_to_decimal(value: Fraction, *, floor: bool) -> Decimal:
    """An edge as a Decimal to 18 places (finer than any tick), on the safe side of it."""
    units = value * 10**18
    count = math.floor(units) if floor else math.ceil(units)
    return _EXACT.multiply(Decimal(count), Decimal(1).scaleb(-18))

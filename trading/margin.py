"""Binance USDⓈ-M perpetual arithmetic in one-way mode: margin, leverage brackets, netting of
fills into a position, funding and the liquidation price. Pure functions on exact Decimals, used
by the simulator's futures account and by the engine's liquidation watch alike.

A position is signed (long > 0). Its notional is |qty| x mark. Initial margin is notional /
leverage; maintenance margin is notional x mmr - cum of the bracket the notional falls in. A fill
that grows a position re-averages its entry; one that shrinks it realises (price - entry) x the
closed quantity x side and keeps the entry; one that crosses zero opens the rest at the fill price.
"""
from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from decimal import Decimal, localcontext

ZERO = Decimal(0)
PRECISION = 60  # digits for divisions, far beyond any price x quantity the exchange accepts


@dataclass(frozen=True)
class Bracket:
    """One leverage bracket (notional tier) of a symbol: positions with floor <= notional < cap
    use this maintenance margin rate and amount, and may use at most `max_leverage`."""

    floor: Decimal
    cap: Decimal
    mmr: Decimal
    cum: Decimal
    max_leverage: int


def brackets(tiers: Iterable[tuple[Decimal, Decimal, Decimal, int]]) -> tuple[Bracket, ...]:
    """Brackets from (notional floor, notional cap, maintenance margin rate, max leverage) rows,
    lowest first, with each maintenance amount derived as Binance does:
    cum_n = floor_n x (mmr_n - mmr_n-1) + cum_n-1, cum_1 = 0."""
    out: list[Bracket] = []
    cum, previous_mmr, previous_cap = ZERO, ZERO, ZERO
    for floor, cap, mmr, leverage in sorted(tiers, key=lambda t: t[0]):
        if floor != previous_cap:
            raise ValueError(f"bracket floors must follow the previous cap: {floor} after {previous_cap}")
        if not floor < cap:
            raise ValueError(f"a bracket's cap must be above its floor: {floor}..{cap}")
        if not ZERO < mmr < 1:
            raise ValueError(f"a maintenance margin rate must be between 0 and 1, not {mmr}")
        cum = floor * (mmr - previous_mmr) + cum
        out.append(Bracket(floor, cap, mmr, cum, int(leverage)))
        previous_mmr, previous_cap = mmr, cap
    if not out:
        raise ValueError("a symbol needs at least one leverage bracket")
    return tuple(out)


def bracket_for(notional: Decimal, tiers: Sequence[Bracket]) -> Bracket:
    """The bracket whose [floor, cap) holds `notional` (the last one beyond the top cap)."""
    for bracket in tiers:
        if notional < bracket.cap:
            return bracket
    return tiers[-1]


def initial_margin(notional: Decimal, leverage: int) -> Decimal:
    with localcontext() as ctx:
        ctx.prec = PRECISION
        return abs(notional) / leverage


def maintenance_margin(notional: Decimal, tiers: Sequence[Bracket]) -> Decimal:
    notional = abs(notional)
    if not notional:
        return ZERO
    bracket = bracket_for(notional, tiers)
    return notional * bracket.mmr - bracket.cum


def unrealized_pnl(qty: Decimal, entry: Decimal, mark: Decimal) -> Decimal:
    return (mark - entry) * qty


def funding_income(qty: Decimal, mark: Decimal, rate: Decimal) -> Decimal:
    """What a position receives (> 0) or pays (< 0) at one funding time: longs pay a positive
    rate on their notional at mark, shorts receive it."""
    return -(qty * mark * rate)


@dataclass(frozen=True)
class Position:
    qty: Decimal = ZERO  # signed: long > 0
    entry: Decimal = ZERO  # average entry price; 0 when flat


def apply_fill(position: Position, *, side: str, qty: Decimal, price: Decimal) -> tuple[Position, Decimal]:
    """The position after a fill of `qty` (> 0) at `price`, and the PnL it realises (gross of
    fees, as the exchange's realizedPnl)."""
    if qty <= 0:
        raise ValueError(f"a fill's quantity must be positive, not {qty}")
    if side not in ("buy", "sell"):
        raise ValueError(f"a fill's side is buy or sell, not {side!r}")
    delta = qty if side == "buy" else -qty
    held = position.qty
    if not held or (held > 0) == (delta > 0):  # opens or grows
        total = held + delta
        with localcontext() as ctx:
            ctx.prec = PRECISION
            entry = (position.entry * abs(held) + price * qty) / abs(total)
        return Position(total, entry), ZERO
    closed = min(qty, abs(held))
    direction = 1 if held > 0 else -1
    realized = (price - position.entry) * closed * direction
    rest = held + delta
    if not rest:
        return Position(), realized
    if (rest > 0) == (held > 0):  # shrinks
        return Position(rest, position.entry), realized
    return Position(rest, price), realized  # crosses zero: the rest opens at the fill price


def liquidation_price(*, wallet: Decimal, qty: Decimal, entry: Decimal, tiers: Sequence[Bracket],
                      others_maintenance: Decimal = ZERO, others_unrealized: Decimal = ZERO) -> Decimal | None:
    """The mark price at which the margin balance meets the maintenance margin, by Binance's
    one-way formula: LP = (WB - TMM + UPNL + cum - side x |qty| x entry) / (|qty| x mmr - side x |qty|).

    `wallet` is the cross wallet balance (cross) or the position's isolated wallet; the `others_`
    terms are the maintenance margin and unrealised PnL of the account's other cross positions
    (zero for isolated). The bracket is the one the notional at the liquidation price falls in,
    found by trying each. None when flat or when the position cannot be liquidated (LP <= 0)."""
    if not qty:
        return None
    side = 1 if qty > 0 else -1
    size = abs(qty)
    with localcontext() as ctx:
        ctx.prec = PRECISION
        candidates = []
        for bracket in tiers:
            numerator = wallet - others_maintenance + others_unrealized + bracket.cum - side * size * entry
            denominator = size * bracket.mmr - side * size
            price = numerator / denominator
            if price > 0 and bracket_for(size * price, tiers) == bracket:
                candidates.append(price)
        if not candidates:
            return None
        # One bracket is consistent in practice; should two be, the nearer the entry comes first.
        return min(candidates) if side < 0 else max(candidates)


def cross_terms(positions: Iterable[tuple[Decimal, Decimal, Decimal, Sequence[Bracket]]]) -> tuple[Decimal, Decimal]:
    """(maintenance margin, unrealised PnL) summed over other cross positions given as
    (qty, entry, mark, brackets): the TMM and UPNL terms of `liquidation_price`."""
    maintenance = unrealized = ZERO
    for qty, entry, mark, tiers in positions:
        maintenance += maintenance_margin(qty * mark, tiers)
        unrealized += unrealized_pnl(qty, entry, mark)
    return maintenance, unrealized

"""Realised PnL of grid slots: one pure function, used by the ledger (`services.fill_record`),
the dashboard's PnL curve, the metrics and backtests.

A slot holds what its buys received at their cost. A sell realises (sell price x amount - the
cost of the part sold, at the slot's average buy price); every fill subtracts its fee valued in
quote. A fee taken in the base asset shrinks the holding instead of adding to its cost. All
amounts are exact Decimals, rounded once per step to the ledger's money places.
"""
from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal, localcontext

from trading.fields import MONEY_PLACES

ZERO = Decimal(0)
QUANTUM = Decimal(1).scaleb(-MONEY_PLACES)


def money(value: Decimal) -> Decimal:
    """`value` at the ledger's money places (the one rounding of ledger amounts)."""
    with localcontext() as ctx:
        ctx.prec = 60
        return value.quantize(QUANTUM)


def fee_in_quote(*, fee: Decimal, fee_currency: str, price: Decimal, base: str, quote: str) -> Decimal:
    """A trade's fee valued in the quote currency (a fee in the base asset at the trade price;
    a fee in a third asset, such as BNB, is not valued here and counts as 0)."""
    if not fee or fee_currency == quote:
        return fee
    if fee_currency == base:
        return money(fee * price)
    return ZERO


@dataclass(frozen=True)
class SlotBook:
    """What one grid slot holds, what that cost, and what it has realised."""

    holding: Decimal = ZERO
    cost: Decimal = ZERO
    realized: Decimal = ZERO


def apply_fill(book: SlotBook, *, side: str, price: Decimal, amount: Decimal, fee: Decimal, fee_currency: str,
               base: str, quote: str) -> SlotBook:
    """The slot after one fill (side "buy" or "sell") of `amount` at `price`."""
    with localcontext() as ctx:
        ctx.prec = 60  # exact for every amount the ledger can hold
        realized = money(book.realized - fee_in_quote(fee=fee, fee_currency=fee_currency, price=price, base=base,
                                                      quote=quote))
        if side == "buy":
            received = amount - fee if fee_currency == base else amount
            return SlotBook(money(book.holding + received), money(book.cost + price * received), realized)
        sold = min(amount, book.holding)
        cost_part = money(book.cost * sold / book.holding) if book.holding else ZERO
        return SlotBook(money(book.holding - sold), money(book.cost - cost_part),
                        money(realized + price * amount - cost_part))

"""One small error taxonomy for everything an exchange can answer.

The engine reacts to the class, never to ccxt's exception tree or message texts:

- `Rejected`: the exchange refused the request; it did not execute. Never retried as is.
  (`InsufficientFunds`, `PostOnlyWouldTake`, `DuplicateClientOrderId`, `AuthenticationFailed`
  are kinds of rejection.)
- `OrderNotFound`: the exchange knows no such order.
- `RateLimited`: slow down; `retry_after` seconds when the exchange said so.
- `Ambiguous`: the request may or may not have executed (timeouts, 5xx, network errors,
  Binance -1007, a malformed reply). Resolve by querying, never by resending under a new id.
"""
from __future__ import annotations


class ExchangeFailure(Exception):
    """Base class of every gateway error."""


class Rejected(ExchangeFailure):
    """Refused by the exchange; nothing executed."""


class InsufficientFunds(Rejected):
    """Not enough free balance for the order."""


class PostOnlyWouldTake(Rejected):
    """A post-only order would have matched immediately."""


class DuplicateClientOrderId(Rejected):
    """An open order already carries this client order id."""


class ReduceOnlyRejected(Rejected):
    """Futures: a reduce-only order that would not reduce the position (the exchange's position is
    smaller than, or on the other side of, what the order assumed)."""


class PositionModeMismatch(Rejected):
    """Futures: the account is in hedge mode (or the order names a position side); QuantMesh trades
    one-way mode only."""


class AuthenticationFailed(Rejected):
    """Bad API key, secret or signature."""


class OrderNotFound(ExchangeFailure):
    """The exchange knows no order with this id."""


class RateLimited(ExchangeFailure):
    def __init__(self, message: str, retry_after: float | None = None):
        super().__init__(message)
        self.retry_after = retry_after


class Ambiguous(ExchangeFailure):
    """The outcome is unknown: the request may have executed."""


class MalformedReply(Ambiguous):
    """The exchange answered something we cannot trust (e.g. an order without an id)."""


class LiveTradingDisabled(ExchangeFailure):
    """A non-paper account was used while QM_LIVE_TRADING is off."""


class UnsupportedExchange(ExchangeFailure):
    """QuantMesh has no dialect for the exchange (`trading.exchange.dialects`): nothing is sent."""

"""Business-rule errors raised by trading services."""


class TradingError(Exception):
    """A business rule refused the operation; the message says why."""


class IllegalTransition(TradingError):
    """An order status change that the transition table does not allow."""


class FencedWrite(TradingError):
    """A ledger write carried a fencing token older than the symbol's stored fence: the writer
    has lost its lease or lock and must stop."""

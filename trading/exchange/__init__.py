"""Exchange access through ccxt: `ExchangeGateway`, its dataclasses and its error taxonomy."""
from trading.exchange.errors import (  # noqa: F401
    Ambiguous,
    AuthenticationFailed,
    DuplicateClientOrderId,
    ExchangeFailure,
    InsufficientFunds,
    LiveTradingDisabled,
    MalformedReply,
    OrderNotFound,
    PostOnlyWouldTake,
    RateLimited,
    Rejected,
)
from trading.exchange.gateway import ExchangeGateway, build_exchange  # noqa: F401
from trading.exchange.types import Balance, ExchangeOrder, ListedMarket, Ticker, Trade  # noqa: F401

"""Exchange access through ccxt: `ExchangeGateway`, its dataclasses, its error taxonomy and the
dialects of the exchanges it can trade on."""
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
    UnsupportedExchange,
)
from trading.exchange.gateway import ExchangeGateway, build_exchange  # noqa: F401
from trading.exchange.types import Balance, ExchangeOrder, ListedMarket, Ticker, Trade  # noqa: F401

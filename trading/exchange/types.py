"""What the gateway returns: frozen dataclasses holding Decimals, independent of ccxt."""
from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal


@dataclass(frozen=True)
class ListedMarket:
    """A market as the exchange lists it: its ids, currencies and order filters. The grid's
    rounding works on `trading.grid.MarketRules`, built from these filters."""

    symbol: str  # unified, e.g. "BTC/USDT"
    market_id: str  # exchange's, e.g. "BTCUSDT"
    base: str
    quote: str
    tick_size: Decimal
    step_size: Decimal
    min_amount: Decimal
    min_notional: Decimal
    active: bool = True


@dataclass(frozen=True)
class Ticker:
    symbol: str
    bid: Decimal | None
    ask: Decimal | None
    last: Decimal
    timestamp_ms: int | None


@dataclass(frozen=True)
class Balance:
    asset: str
    free: Decimal
    locked: Decimal

    @property
    def total(self) -> Decimal:
        return self.free + self.locked


@dataclass(frozen=True)
class ExchangeOrder:
    """An order as the exchange reports it. `status` uses the ledger's vocabulary
    (open, partially_filled, filled, canceled, rejected, expired)."""

    symbol: str
    exchange_order_id: str
    client_order_id: str
    side: str  # buy / sell
    price: Decimal
    amount: Decimal
    filled: Decimal
    average_price: Decimal | None
    status: str
    post_only: bool
    timestamp_ms: int | None

    @property
    def is_open(self) -> bool:
        return self.status in {"open", "partially_filled"}


@dataclass(frozen=True)
class Trade:
    symbol: str
    trade_id: str
    exchange_order_id: str
    side: str
    price: Decimal
    amount: Decimal
    fee: Decimal
    fee_currency: str
    is_maker: bool | None
    timestamp_ms: int
    realized_pnl: Decimal | None = None  # futures: the exchange's own figure for the trade


@dataclass(frozen=True)
class FuturesPosition:
    """A one-way futures position as the exchange reports it; flat is qty 0."""

    symbol: str
    qty: Decimal  # signed: long > 0
    entry_price: Decimal
    mark_price: Decimal
    unrealized_pnl: Decimal
    liquidation_price: Decimal | None
    margin_mode: str  # cross or isolated
    leverage: int | None  # None when the exchange's reply does not carry it


@dataclass(frozen=True)
class FuturesAccount:
    """The margin asset's balances of a futures account."""

    asset: str
    wallet_balance: Decimal
    margin_balance: Decimal  # wallet + unrealised PnL
    available_balance: Decimal
    initial_margin: Decimal
    maint_margin: Decimal
    unrealized_pnl: Decimal


@dataclass(frozen=True)
class FundingEvent:
    """One funding payment: negative was paid."""

    tran_id: str
    symbol: str
    amount: Decimal
    asset: str
    timestamp_ms: int

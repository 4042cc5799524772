"""Configuration of the exchange simulator: markets, starting balances, fees and limits.

Money is `Decimal` throughout. Constructors accept `Decimal`, `int` or decimal strings and
refuse floats, so a binary rounding error can never slip into a price or a balance. Once built,
every such field holds a `Decimal`: the fields are annotated with what they hold, and each class
declares, for type checkers only, the `__init__` signature that takes a `DecimalLike`.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from functools import cached_property
from pathlib import Path

DecimalLike = Decimal | int | str

DEFAULT_API_KEY = "qm-paper"
DEFAULT_API_SECRET = "qm-paper-secret"


def to_decimal(value: DecimalLike, name: str) -> Decimal:
    """Convert `value` to a finite Decimal; floats are refused."""
    if isinstance(value, float):
        raise TypeError(f"{name}: use Decimal or a string, not float ({value!r})")
    if isinstance(value, bool):
        raise TypeError(f"{name}: not a number: {value!r}")
    try:
        result = Decimal(value) if isinstance(value, (Decimal, int)) else Decimal(str(value).strip())
    except InvalidOperation:
        raise ValueError(f"{name}: not a decimal number: {value!r}") from None
    if not result.is_finite():
        raise ValueError(f"{name}: not a finite number: {value!r}")
    return result


def split_symbol(symbol: str) -> tuple[str, str]:
    """'BTC/USDT' -> ('BTC', 'USDT')."""
    parts = symbol.strip().upper().split("/")
    if len(parts) != 2 or not all(part.isalnum() for part in parts):
        raise ValueError(f"symbol must look like BASE/QUOTE, e.g. BTC/USDT: {symbol!r}")
    return parts[0], parts[1]


@dataclass(frozen=True)
class MarketSpec:
    """One spot market, given in ccxt form ("BTC/USDT") and served as "BTCUSDT".

    `price` is the starting price of the path (ignored when `klines_csv` is set: the replay
    starts at the close of its first row). `tick` is PRICE_FILTER.tickSize, `step` is
    LOT_SIZE.stepSize, `min_notional` is NOTIONAL.minNotional. `volatility` and `drift` are the
    per-step standard deviation and mean of the log return of the random path.
    """

    symbol: str
    price: Decimal | None = None
    tick: Decimal = Decimal("0.01")
    step: Decimal = Decimal("0.00001")
    min_notional: Decimal = Decimal("5")
    min_qty: Decimal = None  # type: ignore[assignment]  # None stands for `step`, set in __post_init__
    max_qty: Decimal = Decimal("9000")
    min_price: Decimal = None  # type: ignore[assignment]  # None stands for `tick`, set in __post_init__
    max_price: Decimal = Decimal("1000000")
    volatility: Decimal = Decimal("0.001")
    drift: Decimal = Decimal("0")
    book_qty: Decimal = Decimal("1")
    klines_csv: str | Path | None = None

    def __post_init__(self) -> None:
        split_symbol(self.symbol)
        object.__setattr__(self, "symbol", self.symbol.strip().upper())
        for name in ("tick", "step", "min_notional", "max_qty", "max_price", "volatility", "drift",
                     "book_qty"):
            self._set_decimal(name)
        for name in ("price", "min_qty", "min_price"):
            if getattr(self, name) is not None:
                self._set_decimal(name)
        if self.min_qty is None:
            object.__setattr__(self, "min_qty", self.step)
        if self.min_price is None:
            object.__setattr__(self, "min_price", self.tick)
        self._validate()

    def _set_decimal(self, name: str) -> None:
        object.__setattr__(self, name, to_decimal(getattr(self, name), f"{self.symbol} {name}"))

    def _validate(self) -> None:
        for name in ("tick", "step", "min_qty", "max_qty", "min_price", "max_price", "book_qty"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{self.symbol} {name} must be positive")
        if self.min_notional < 0 or self.volatility < 0:
            raise ValueError(f"{self.symbol} min_notional and volatility must not be negative")
        if self.price is None and self.klines_csv is None:
            raise ValueError(f"{self.symbol}: give a starting price or a klines CSV")
        if self.price is not None and self.price <= 0:
            raise ValueError(f"{self.symbol} price must be positive")

    @cached_property
    def base(self) -> str:
        return split_symbol(self.symbol)[0]

    @cached_property
    def quote(self) -> str:
        return split_symbol(self.symbol)[1]

    @property
    def market_id(self) -> str:
        """The Binance symbol, e.g. BTCUSDT."""
        return self.base + self.quote


# Filters close to Binance's own for the markets the platform trades by default.
PRESETS: dict[str, dict[str, Decimal]] = {
    "BTC/USDT": {"price": Decimal("60000"), "tick": Decimal("0.01"), "step": Decimal("0.00001")},
    "ETH/USDT": {"price": Decimal("3000"), "tick": Decimal("0.01"), "step": Decimal("0.0001")},
    "BNB/USDT": {"price": Decimal("600"), "tick": Decimal("0.01"), "step": Decimal("0.001")},
    "SOL/USDT": {"price": Decimal("150"), "tick": Decimal("0.01"), "step": Decimal("0.001")},
}


def market_for(symbol: str, price: DecimalLike | None = None,
               klines_csv: str | Path | None = None) -> MarketSpec:
    """A MarketSpec with sensible filters: a preset when known, else derived from the price."""
    symbol = symbol.strip().upper()
    preset = PRESETS.get(symbol)
    if preset is not None:
        start = preset["price"] if price is None else to_decimal(price, f"{symbol} price")
        return MarketSpec(symbol, price=start, tick=preset["tick"], step=preset["step"],
                          klines_csv=klines_csv)
    if price is None and klines_csv is None:
        raise ValueError(f"{symbol}: no default price known, give one")
    if price is None:
        return MarketSpec(symbol, klines_csv=klines_csv)
    start = to_decimal(price, f"{symbol} price")
    tick, step = filters_for_price(start)
    return MarketSpec(symbol, price=start.quantize(tick), tick=tick, step=step,
                      klines_csv=klines_csv)


def filters_for_price(price: Decimal) -> tuple[Decimal, Decimal]:
    """Tick about a millionth of the price, step worth about a tenth of a quote unit."""
    magnitude = price.adjusted()  # floor(log10(price))
    tick = Decimal(1).scaleb(max(min(magnitude - 6, 0), -8))
    step = Decimal(1).scaleb(max(min(-(magnitude + 1), 0), -8))
    return tick, step


def default_markets() -> list[MarketSpec]:
    return [market_for("BTC/USDT"), market_for("ETH/USDT")]


def default_balances() -> dict[str, Decimal]:
    return {"USDT": Decimal("100000"), "BTC": Decimal("1"), "ETH": Decimal("10")}


@dataclass
class SimConfig:
    """Everything that shapes one simulated exchange account.

    `tick_seconds`: advance every price path one step at that interval in server mode (None:
    only on request). `partial_fill_ratio`: when set (0 < r < 1), a resting order crossed by
    the price fills only that fraction of its original quantity per price move. `candle_ms`:
    simulated time covered by one step of a random path (each step is one candle).
    """

    markets: list[MarketSpec] = field(default_factory=default_markets)
    seed: int = 1
    balances: dict[str, Decimal] = field(default_factory=default_balances)
    maker_fee: Decimal = Decimal("0.001")
    taker_fee: Decimal = Decimal("0.001")
    api_key: str = DEFAULT_API_KEY
    api_secret: str = DEFAULT_API_SECRET
    weight_limit: int = 6000
    order_limit_10s: int = 100  # Binance's ORDERS limits per account (exchangeInfo.rateLimits)
    order_limit_day: int = 200_000
    tick_seconds: float | None = None
    partial_fill_ratio: Decimal | None = None
    candle_ms: int = 60_000
    start_time_ms: int | None = None
    max_candles: int = 50_000

    def __post_init__(self) -> None:
        if not self.markets:
            raise ValueError("at least one market is needed")
        ids = [market.market_id for market in self.markets]
        if len(set(ids)) != len(ids):
            raise ValueError(f"duplicate markets: {ids}")
        self.balances = {asset.upper(): to_decimal(amount, f"balance {asset}")
                         for asset, amount in self.balances.items()}
        if any(amount < 0 for amount in self.balances.values()):
            raise ValueError("balances must not be negative")
        self.maker_fee = to_decimal(self.maker_fee, "maker_fee")
        self.taker_fee = to_decimal(self.taker_fee, "taker_fee")
        if not (0 <= self.maker_fee < 1 and 0 <= self.taker_fee < 1):
            raise ValueError("fees must be in [0, 1)")
        if self.partial_fill_ratio is not None:
            self.partial_fill_ratio = to_decimal(self.partial_fill_ratio, "partial_fill_ratio")
            if not 0 < self.partial_fill_ratio <= 1:
                raise ValueError("partial_fill_ratio must be in (0, 1]")
        if self.weight_limit <= 0:
            raise ValueError("weight_limit must be positive")
        if self.order_limit_10s <= 0 or self.order_limit_day <= 0:
            raise ValueError("order limits must be positive")
        if self.tick_seconds is not None and self.tick_seconds <= 0:
            raise ValueError("tick_seconds must be positive")
        if self.candle_ms <= 0 or self.max_candles < 2:
            raise ValueError("candle_ms must be positive and max_candles at least 2")
        if not self.api_key or not self.api_secret:
            raise ValueError("api_key and api_secret must not be empty")

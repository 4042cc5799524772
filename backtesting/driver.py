"""One backtest: `SymbolEngine` trading a replay of recorded candles on a simulated clock.

The engine, the grid, the services and the ledger are `runbot`'s; the exchange is the
simulator's matching engine walking each candle's path (`pricepath.candle_path`), reached in
process (`backtesting.gateway`) or over HTTP through ccxt (`transport="http"`), both giving the
same orders. Whatever Django is connected to receives the run's ledger: the `backtest` command
runs this in a worker process on a database of its own.

Ticks follow events, not the clock. After a tick the engine decides the same thing again as
long as nothing fills, the tick ended settled (nothing refused, nothing waiting on time) and the
price stays inside `grid.steady_band`; so the engine ticks at a point of the path only when one
of those changes. A `runbot` paper run ticking at every point gives the same orders (a test
holds the two to it).
"""
from __future__ import annotations

import resource
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import time_machine

import notifications
from backtesting import klines
from backtesting.gateway import LocalGateway
from backtesting.results import Curve, summarise
from locking.nop import NopLock
from trading import grid, pnl, services
from trading.engine import SymbolEngine, TickResult
from trading.models import ExchangeAccount, Fill, GridSlot, Order, Symbol
from trading.simulator import MarketSpec, SimConfig, market_for
from trading.simulator.config import filters_for_price
from trading.simulator.matching import Engine
from trading.simulator.pricepath import ReplayPath

# Grid parameters a backtest takes (the names of config.yaml and of the Symbol model).
DECIMAL_PARAMS = ("price_interval", "order_quantity", "min_order_value", "stop_loss_ratio")
INT_PARAMS = ("buy_window_size", "sell_window_size", "order_cleanup_threshold", "cleanup_batch_size",
              "max_grid_layers", "position_safety_check", "margin_lock_duration_seconds")
DEFAULT_FEE = Decimal("0.001")  # Binance spot, maker and taker, without BNB discount
DEFAULT_BALANCES = {"USDT": Decimal("10000")}
MAX_CANDLES_KEPT = 1000  # the simulator's klines history in memory; the engine never reads it


@dataclass
class Spec:
    """Everything a run depends on (JSON-able through `as_dict`)."""

    klines: str
    symbol: str = "BTC/USDT"
    start_ms: int | None = None
    end_ms: int | None = None
    params: dict[str, Any] = field(default_factory=dict)
    balances: dict[str, Decimal] = field(default_factory=lambda: dict(DEFAULT_BALANCES))
    maker_fee: Decimal = DEFAULT_FEE
    taker_fee: Decimal = DEFAULT_FEE
    transport: str = "local"  # or "http": ccxt against the simulator's HTTP server

    def as_dict(self) -> dict[str, Any]:
        return {"klines": self.klines, "symbol": self.symbol, "start_ms": self.start_ms, "end_ms": self.end_ms,
                "params": {k: str(v) for k, v in self.params.items()},
                "balances": {k: str(v) for k, v in self.balances.items()},
                "maker_fee": str(self.maker_fee), "taker_fee": str(self.taker_fee), "transport": self.transport}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Spec:
        params: dict[str, Any] = {}
        for key, value in data.get("params", {}).items():
            params[key] = int(value) if key in INT_PARAMS else Decimal(str(value))
        return cls(klines=data["klines"], symbol=data.get("symbol", "BTC/USDT"), start_ms=data.get("start_ms"),
                   end_ms=data.get("end_ms"), params=params,
                   balances={k: Decimal(str(v)) for k, v in data.get("balances", DEFAULT_BALANCES).items()},
                   maker_fee=Decimal(str(data.get("maker_fee", DEFAULT_FEE))),
                   taker_fee=Decimal(str(data.get("taker_fee", DEFAULT_FEE))),
                   transport=data.get("transport", "local"))


def market_spec(symbol: str, reference_price: Decimal) -> MarketSpec:
    """The market's filters: Binance's for the symbols the simulator knows, else derived from
    the price (a tick about a millionth of it)."""
    try:
        spec = market_for(symbol)
    except ValueError:
        tick, step = filters_for_price(reference_price)
        spec = MarketSpec(symbol, price=reference_price.quantize(tick), tick=tick, step=step)
    return spec


def sim_config(spec: Spec, market: MarketSpec) -> SimConfig:
    return SimConfig(markets=[market], balances=dict(spec.balances), maker_fee=spec.maker_fee,
                     taker_fee=spec.taker_fee, max_candles=MAX_CANDLES_KEPT)


def replay_factory(path: Path, start_ms: int | None, end_ms: int | None) -> Callable[[MarketSpec, int], ReplayPath]:
    """The simulator's path for a checked candle file: read as it is replayed."""
    def build(market: MarketSpec, _start: int) -> ReplayPath:
        return ReplayPath(klines.candles(path, market.tick, start_ms=start_ms, end_ms=end_ms), MAX_CANDLES_KEPT)
    return build


class SimClock:
    """The simulated time in ms; `monotonic` for the engine, `sync` moves the process's wall clock
    (time.time, datetime.now, timezone.now) to it before the engine runs."""

    def __init__(self, start_ms: int):
        self.ms = start_ms
        self._synced: int | None = None
        self._travel = time_machine.travel(self._datetime(), tick=False)
        self._coordinates: Any = None

    def _datetime(self) -> datetime:
        return datetime.fromtimestamp(self.ms / 1000, tz=UTC)

    def set(self, ms: int) -> None:
        self.ms = max(self.ms, ms)

    def now_ms(self) -> int:
        return self.ms

    def monotonic(self) -> float:
        return self.ms / 1000

    def sync(self) -> None:
        if self._synced != self.ms:
            self._coordinates.move_to(self._datetime())
            self._synced = self.ms

    def __enter__(self) -> SimClock:
        self._coordinates = self._travel.start()
        self._synced = self.ms
        return self

    def __exit__(self, *exc: object) -> None:
        self._travel.stop()


@dataclass
class Progress:
    candles: int
    total: int
    ticks: int
    fills: int
    price: Decimal


def settled(result: TickResult, engine: SymbolEngine, clock: SimClock) -> bool:
    """Whether the same state at a price in the same steady band gives a tick that does nothing:
    the tick placed all it wanted and nothing waits on time (a pause, a backoff, a margin lock)."""
    if result.rejected or result.error or result.conflicts or result.lock_errors or result.rejected_reasons:
        return False
    now = clock.monotonic()
    symbol = engine.symbol
    return (engine.buys_paused_until <= now and engine.backoff_until <= now and not symbol.stop_loss_ratio
            and (symbol.status == Symbol.Status.RUNNING or symbol.paused_until is None))


def run(spec: Spec, *, checked: klines.KlineFile | None = None, every_point: bool = False,
        progress: Callable[[Progress], None] | None = None) -> dict[str, Any]:
    """Run one backtest into the current database; return its results (see `results.summarise`).
    `every_point`: tick at every point of the path, as `runbot --replay` does. A backtest tells
    the operator nothing: its pauses and round trips are history, not news."""
    path = Path(spec.klines)
    market = market_spec(spec.symbol, klines.first_price(path))
    checked = checked or klines.check(path, market.tick, start_ms=spec.start_ms, end_ms=spec.end_ms)
    config = sim_config(spec, market)
    factory = replay_factory(path, spec.start_ms, spec.end_ms)
    started = time.perf_counter()
    clock = SimClock(checked.first_ms + checked.interval_ms - 1)  # the first candle's close
    with clock, notifications.suppressed():
        if spec.transport == "http":
            return _run_http(spec, config, factory, clock, checked, every_point, progress, started)
        sim = Engine(config, clock=clock.now_ms, path_factory=factory)
        gateway = LocalGateway(sim, clock.now_ms)
        return _run(spec, sim, gateway, _symbol(spec, None), clock, checked, every_point, progress, started)


def replay_server(symbol: str, path: Path):
    """A started simulator replaying a checked candle file for `runbot --replay`, with the
    backtest's default balances and fees, and the function that walks it one point on (False
    once the file has ended)."""
    from trading.simulator import SimulatorServer

    market = market_spec(symbol, klines.first_price(path))
    klines.check(path, market.tick)
    spec = Spec(klines=str(path), symbol=symbol)
    config = sim_config(spec, market)
    # A replay ticks four times per candle as fast as it can: the weight limit is per wall-clock
    # minute, and would stretch 1,000 candles over several minutes for nothing.
    config.weight_limit = 10**9
    # For the same reason (1,000 candles pass in about a minute), the order limits, per 10 s and per
    # day of wall-clock time; a backtest keeps them in simulated time.
    config.order_limit_10s = config.order_limit_day = 10**9
    server = SimulatorServer(config, path_factory=replay_factory(path, None, None))
    server.start()
    return server, lambda: server.engine.step_point(symbol) is not None


def _run_http(spec, config, factory, clock, checked, every_point, progress, started) -> dict[str, Any]:
    from trading.exchange.accounts import gateway_for
    from trading.simulator import SimulatorServer

    with SimulatorServer(config, clock=clock.now_ms, path_factory=factory) as server:
        symbol = _symbol(spec, server.base_url)
        gateway = gateway_for(symbol.account)
        return _run(spec, server.engine, gateway, symbol, clock, checked, every_point, progress, started)


def _symbol(spec: Spec, base_url: str | None) -> Symbol:
    account = ExchangeAccount.objects.create(name=f"backtest-{spec.transport}", exchange_id="binance", paper=True,
                                             base_url=base_url or "")
    values = {"position_safety_check": 0, **spec.params}
    return Symbol.objects.create(account=account, symbol=spec.symbol, **values)


def _run(spec: Spec, sim: Engine, gateway, symbol: Symbol, clock: SimClock, checked: klines.KlineFile,
         every_point: bool, progress: Callable[[Progress], None] | None, started: float) -> dict[str, Any]:
    market = sim.spec(spec.symbol)
    engine = SymbolEngine(symbol, gateway, NopLock(), writer=services.Writer("backtest", 0), monotonic=clock.monotonic)
    engine.prepare()
    engine.tick()  # the grid at the first close, before the walk begins (as runbot --replay does)
    start_price = sim.price(spec.symbol)
    curve = Curve(start_ms=clock.ms, start_price=start_price, balances=_holdings(sim, market),
                  candles=checked.candles - 1, taker_fee=spec.taker_fee)
    ticks, fills, points, candles, rechecks = 1, 0, 0, 0, 0
    low = high = start_price
    calm = False
    quiet: set[tuple[Decimal, Decimal]] = set()  # bands where the grid has nothing to do, since the last tick
    report_every = max(1, (checked.candles - 1) // 100)
    while True:
        # A candle wholly inside the band, out of reach of every resting order, changes nothing
        # the engine looks at: walked at once, it leaves what its four points would.
        quiet_candle = (sim.skip_quiet_candle(spec.symbol, low, high, on_time=clock.set)
                        if calm and not every_point and points % 4 == 0 else None)
        if quiet_candle is not None:
            points += 4
            price = quiet_candle.close
        else:
            step = sim.step_point(spec.symbol, on_time=clock.set)
            if step is None:
                break
            segment, trades = step
            points += 1
            price = segment.end
            fills += len(trades)
            must = every_point or bool(trades) or not calm
            if not must and not low < price < high:
                # Left the band: a band already found quiet since the last tick is quiet again
                # (the state has not changed); else ask the grid.
                low, high = grid.steady_band(engine.lattice, price)
                if (low, high) not in quiet:
                    rechecks += 1
                    must = engine.would_act(price)
                    if not must:
                        quiet.add((low, high))
            if must:
                clock.sync()
                result = engine.tick()
                ticks += 1
                low, high = grid.steady_band(engine.lattice, result.price or price)
                calm = settled(result, engine, clock)
                quiet = {(low, high)} if calm else set()
        if points % 4 == 0:  # a candle's close
            candles += 1
            curve.close(clock.ms, price, _holdings(sim, market))
            if progress is not None and candles % report_every == 0:
                progress(Progress(candles, checked.candles - 1, ticks, fills, price))
    clock.sync()
    engine.tick()
    elapsed = time.perf_counter() - started
    return summarise(
        curve=curve, end_price=sim.price(spec.symbol), end_balances=_holdings(sim, market),
        ledger=_ledger(symbol, engine.lattice.anchor), span_ms=checked.span_ms - checked.interval_ms,
        run={"candles": candles, "points": points, "ticks": ticks, "rechecks": rechecks, "exchange_fills": fills,
             "seconds": round(elapsed, 3), "candles_per_second": round(candles / elapsed) if elapsed else None,
             "requests": getattr(gateway, "requests", None),
             "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
             "tick_size": str(market.tick),
             "step_size": str(market.step), "min_notional": str(market.min_notional)},
    )


def _holdings(sim: Engine, market: MarketSpec) -> tuple[Decimal, Decimal, Decimal]:
    """(quote free, quote total, base total) of the account."""
    quote, base = sim.balance(market.quote), sim.balance(market.base)
    return quote.free, quote.total, base.total


def _ledger(symbol: Symbol, anchor: Decimal) -> dict[str, Any]:
    """What the ledger booked: slots, fees, orders and fills (for the report's chart)."""
    slots = list(GridSlot.objects.filter(symbol=symbol).values_list("holding", "cost", "realized_pnl", "round_trips"))
    fees = Decimal(0)
    base, quote = symbol.symbol.split("/")
    fills = []
    for side, price, amount, fee, currency, traded_at in Fill.objects.filter(symbol=symbol).order_by("traded_at", "id").values_list(
            "side", "price", "amount", "fee", "fee_currency", "traded_at"):
        fees += pnl.fee_in_quote(fee=fee, fee_currency=currency, price=price, base=base, quote=quote)
        fills.append((int(traded_at.timestamp() * 1000), side, price, amount))
    orders = Order.objects.filter(symbol=symbol)
    return {
        "holding": sum((s[0] for s in slots), Decimal(0)),
        "cost": sum((s[1] for s in slots), Decimal(0)),
        "realized": sum((s[2] for s in slots), Decimal(0)),
        "round_trips": sum(s[3] for s in slots),
        "fees": fees,
        "orders": orders.count(),
        "orders_rejected": orders.filter(status="rejected").count(),
        "volume": sum((fill[3] for fill in fills), Decimal(0)),
        "fills": fills,
        "anchor": anchor,
    }

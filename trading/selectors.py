"""Reads for the operator dashboard: for each symbol, the grid ladder around the last seen price,
the realised-PnL curve, its status and owner, its last reconcile run; plus the bot instances
and the recent lock conflicts.

The current price is not stored in the database: the page shows the *last seen price*, the
price of the latest fill, else the midpoint of the best open buy and sell, else the lattice
anchor (the first price the bot saw).
"""
from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal, localcontext

from django.urls import reverse
from django.utils import timezone
from django.utils.safestring import mark_safe

from locking.models import LockEvent
from reconciliation.models import ReconcileRun
from trading import charts, grid, liveness, pnl
from trading.models import LIVE_STATUSES, BotInstance, Fill, FundingPayment, GridSlot, Order, PositionSnapshot, Symbol

LADDER_MARGIN = 2  # levels shown beyond the buy and sell windows
LADDER_MAX_ROWS = 41
CHART_MAX_POINTS = 400
LOCK_EVENTS_SHOWN = 15

show = charts.format_number


# --- the ladder ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class LastPrice:
    value: Decimal
    source: str  # "latest fill", "open orders midpoint" or "lattice anchor"
    at: datetime | None = None

    @property
    def display(self) -> str:
        return show(self.value)


@dataclass(frozen=True)
class LadderOrder:
    client_order_id: str
    side: str
    level: int  # the slot level (a sell carries the level of the buy it sells)
    price: Decimal
    amount: Decimal
    filled: Decimal
    status: str

    @property
    def price_display(self) -> str:
        return show(self.price)

    @property
    def amount_display(self) -> str:
        return show(self.amount)

    @property
    def filled_display(self) -> str:
        return show(self.filled)


@dataclass(frozen=True)
class LadderRow:
    level: int
    price: Decimal
    buys: tuple[LadderOrder, ...] = ()
    sells: tuple[LadderOrder, ...] = ()
    holding: Decimal = Decimal(0)  # the slot's base holding (a filled buy not yet sold)
    cost: Decimal = Decimal(0)
    nearest: bool = False  # the level nearest to the last seen price
    dust: bool = False  # a holding below the exchange's step size: it cannot be sold

    @property
    def price_display(self) -> str:
        return show(self.price)

    @property
    def holding_display(self) -> str:
        return show(self.holding)

    @property
    def cost_display(self) -> str:
        return show(self.cost, 2)


@dataclass(frozen=True)
class Ladder:
    """Rows from the highest price down. `marker_index` is the index of the first row at or
    below the last seen price (len(rows) when every row is above it)."""

    rows: tuple[LadderRow, ...]
    last_price: LastPrice | None
    marker_index: int
    hidden_orders: int = 0  # live orders outside the rows shown
    held_slots: int = 0  # slots holding at least one step of the base asset (all of them, shown or not)
    dust_slots: int = 0  # slots holding less than a step (left over by fees taken in the base asset)


def last_seen_price(symbol: Symbol) -> LastPrice | None:
    fill = symbol.fills.order_by("-traded_at", "-id").values_list("price", "traded_at").first()
    if fill is not None:
        return LastPrice(fill[0], "latest fill", fill[1])
    live = Order.objects.filter(symbol=symbol, status__in=LIVE_STATUSES)
    buys = [p for p in live.filter(side="buy").values_list("price", flat=True)]
    sells = [p for p in live.filter(side="sell").values_list("price", flat=True)]
    if buys and sells:
        with localcontext() as ctx:
            ctx.prec = 60
            return LastPrice((max(buys) + min(sells)) / 2, "open orders midpoint")
    if symbol.anchor_price is not None:
        return LastPrice(symbol.anchor_price, "lattice anchor")
    return None


def lattice_for(symbol: Symbol) -> grid.Lattice | None:
    """The symbol's lattice, once the bot has anchored it and stored the tick size."""
    if symbol.anchor_price is None or symbol.tick_size is None:
        return None
    return grid.Lattice(symbol.anchor_price, symbol.price_interval, symbol.tick_size)


def ladder_for(symbol: Symbol, *, margin: int = LADDER_MARGIN, max_rows: int = LADDER_MAX_ROWS) -> Ladder | None:
    """The grid levels around the last seen price with the live orders on each (a buy at its
    level's price, a sell one level above its slot) and the slots that hold inventory.
    None while the symbol has no lattice yet."""
    lattice = lattice_for(symbol)
    if lattice is None:
        return None
    last = last_seen_price(symbol)
    centre = lattice.level_of(last.value) if last is not None else 0

    orders: dict[int, list[LadderOrder]] = {}
    for o in Order.objects.filter(symbol=symbol, status__in=LIVE_STATUSES).order_by("price", "id"):
        row = LadderOrder(o.client_order_id, o.side, o.level, o.price, o.amount, o.filled_amount, o.status)
        orders.setdefault(lattice.level_of(o.price), []).append(row)
    # Filtered here, not in SQL: on SQLite money is text and a SQL comparison would not be numeric.
    slots = {
        level: (holding, cost)
        for level, holding, cost in GridSlot.objects.filter(symbol=symbol).values_list("level", "holding", "cost")
        if holding > 0
    }
    step = symbol.step_size
    is_dust = (lambda holding: holding < step) if step else (lambda holding: False)

    low = centre - symbol.buy_window_size - margin
    high = centre + symbol.sell_window_size + margin
    for level in [*orders, *slots]:
        low, high = min(low, level), max(high, level)
    if high - low + 1 > max_rows:  # too tall: keep the rows nearest to the price
        start = min(max(centre - max_rows // 2, low), high - max_rows + 1)
        low, high = start, start + max_rows - 1
    shown = range(low, high + 1)
    hidden = sum(len(v) for level, v in orders.items() if level not in shown)

    rows = []
    for level in reversed(shown):
        level_orders = orders.get(level, [])
        holding, cost = slots.get(level, (Decimal(0), Decimal(0)))
        rows.append(LadderRow(
            level=level, price=lattice.price(level),
            buys=tuple(o for o in level_orders if o.side == "buy"),
            sells=tuple(o for o in level_orders if o.side == "sell"),
            holding=holding, cost=cost, nearest=last is not None and level == centre, dust=holding > 0 and is_dust(holding),
        ))
    marker = len(rows)
    if last is not None:
        marker = next((i for i, row in enumerate(rows) if row.price <= last.value), len(rows))
    dust = sum(1 for holding, _ in slots.values() if is_dust(holding))
    return Ladder(tuple(rows), last, marker, hidden, held_slots=len(slots) - dust, dust_slots=dust)


# --- realised PnL --------------------------------------------------------------------------------
def pnl_series(symbol: Symbol) -> list[tuple[datetime, Decimal]]:
    """Cumulative realised PnL after each fill, in quote currency: the fills replayed in the order
    the ledger recorded them through `pnl.apply_fill`, as `services.fill_record` applied them.
    Fills without a ledger order (left to reconciliation) do not touch a slot and are skipped.
    The last value equals the sum of the slots' `realized_pnl`."""
    base, quote = symbol.symbol.split("/")
    books: dict[int, pnl.SlotBook] = {}
    total = Decimal(0)
    latest: datetime | None = None
    points: list[tuple[datetime, Decimal]] = []
    rows = (
        Fill.objects.filter(symbol=symbol, order__isnull=False)
        .order_by("id")
        .values_list("traded_at", "side", "price", "amount", "fee", "fee_currency", "order__level")
    )
    for traded_at, side, price, amount, fee, fee_currency, level in rows.iterator(chunk_size=2000):
        before = books.get(level, pnl.SlotBook())
        after = books[level] = pnl.apply_fill(before, side=side, price=price, amount=amount, fee=fee,
                                              fee_currency=fee_currency, base=base, quote=quote)
        total = pnl.money(total + after.realized - before.realized)
        # A trade applied late (by a reconcile) is plotted when it became known, so time only advances.
        latest = traded_at if latest is None or traded_at > latest else latest
        points.append((latest, total))
    return points


def pnl_chart(symbol: Symbol, points: list[tuple[datetime, Decimal]], *, width: int = 500, height: int = 200) -> str:
    quote = symbol.symbol.split("/")[1]
    svg = charts.line_chart(
        charts.downsample(points, CHART_MAX_POINTS) if points else [], width, height,
        title=f"Realised PnL, {quote}", unit=quote, step=True, empty_text="no fills yet",
    )
    return mark_safe(svg)  # built by charts.line_chart, which escapes every text


# --- instances, owners, reconcile runs, lock events ----------------------------------------------
@dataclass(frozen=True)
class InstanceRow:
    instance: BotInstance
    age: timedelta
    alive: bool
    symbols: tuple[str, ...]  # symbols this instance holds the lease of

    @property
    def age_display(self) -> str:
        return _duration(self.age)

    @property
    def feed_down(self) -> bool:
        """A stream of this instance is down and REST polls in its place."""
        return "streams down" in self.instance.feed


@dataclass(frozen=True)
class Owner:
    instance_id: str
    kind: str  # "lease owner" or "last writer"
    since: datetime | None = None
    token: int | None = None

    @property
    def age_display(self) -> str:
        return _duration(max(timezone.now() - self.since, timedelta(0))) if self.since else ""


def instances_overview(*, now: datetime | None = None, limit: int = 20) -> list[InstanceRow]:
    now = now or timezone.now()
    owners: dict[str, list[str]] = {}
    for name, owner in Symbol.objects.exclude(owner_instance="").values_list("symbol", "owner_instance"):
        owners.setdefault(owner, []).append(name)
    rows = []
    for instance in BotInstance.objects.order_by("-last_heartbeat")[:limit]:
        age = max(now - instance.last_heartbeat, timedelta(0))
        alive = liveness.is_alive(instance, now=now)
        rows.append(InstanceRow(instance, age, alive, tuple(sorted(owners.get(instance.instance_id, ())))))
    return rows


def symbol_owner(symbol: Symbol) -> Owner | None:
    """The instance holding the symbol's lease (multi-instance mode); otherwise the instance
    that wrote the symbol's most recent order, labelled "last writer"."""
    if symbol.owner_instance:
        return Owner(symbol.owner_instance, "lease owner", symbol.owner_since, symbol.owner_token)
    latest = Order.objects.filter(symbol=symbol).order_by("-created_at", "-id").values_list("instance_id", "created_at").first()
    if latest is None:
        return None
    return Owner(latest[0], "last writer", latest[1])


def recent_lock_events(limit: int = LOCK_EVENTS_SHOWN) -> list[LockEvent]:
    return list(LockEvent.objects.order_by("-last_seen_at", "-id")[:limit])


@dataclass
class SymbolCard:
    symbol: Symbol
    ladder: Ladder | None
    realised: Decimal
    fills: int
    chart: str
    owner: Owner | None
    last_run: ReconcileRun | None
    open_buys: int = 0
    open_sells: int = 0
    links: dict[str, str] = field(default_factory=dict)
    futures: FuturesView | None = None

    @property
    def realised_display(self) -> str:
        return show(self.realised, 8)

    @property
    def net_pnl(self) -> Decimal:
        """Realised PnL of the slots (fees included) plus funding received minus paid."""
        return self.realised + (self.futures.funding if self.futures is not None else Decimal(0))

    @property
    def net_pnl_display(self) -> str:
        return show(self.net_pnl, 8)

    @property
    def base(self) -> str:
        return self.symbol.symbol.split("/")[0]

    @property
    def quote(self) -> str:
        return self.symbol.symbol.split("/")[1]


@dataclass(frozen=True)
class FuturesView:
    """A futures symbol's position as the newest reconcile pass read it, and its funding."""

    snapshot: PositionSnapshot | None
    funding: Decimal  # received minus paid
    funding_count: int

    @property
    def margin_ratio(self) -> Decimal | None:
        snap = self.snapshot
        if snap is None or snap.wallet_balance + snap.unrealized_pnl <= 0:
            return None
        return snap.maint_margin / (snap.wallet_balance + snap.unrealized_pnl)

    @property
    def liquidation_distance(self) -> Decimal | None:
        """(mark - liquidation price) / mark of a long position."""
        snap = self.snapshot
        if snap is None or snap.liquidation_price is None or snap.mark_price <= 0 or snap.qty <= 0:
            return None
        return (snap.mark_price - snap.liquidation_price) / snap.mark_price

    def percent(self, value: Decimal | None) -> str:
        return "–" if value is None else f"{value * 100:.2f} %"

    @property
    def margin_ratio_display(self) -> str:
        return self.percent(self.margin_ratio)

    @property
    def liquidation_distance_display(self) -> str:
        return self.percent(self.liquidation_distance)

    @property
    def funding_display(self) -> str:
        return show(self.funding, 8)


def futures_view(symbol: Symbol) -> FuturesView:
    snapshot = PositionSnapshot.objects.filter(symbol=symbol).order_by("-taken_at", "-id").first()
    amounts = list(FundingPayment.objects.filter(symbol=symbol).values_list("amount", flat=True))
    return FuturesView(snapshot, sum(amounts, Decimal(0)), len(amounts))


def symbol_cards(symbols: Iterable[Symbol]) -> list[SymbolCard]:
    cards = []
    for symbol in symbols:
        points = pnl_series(symbol)
        ladder = ladder_for(symbol)
        realised = sum(
            (pnl for pnl in GridSlot.objects.filter(symbol=symbol).values_list("realized_pnl", flat=True)), Decimal(0)
        )
        live = Order.objects.filter(symbol=symbol, status__in=LIVE_STATUSES)
        cards.append(SymbolCard(
            symbol=symbol,
            ladder=ladder,
            realised=realised,
            fills=len(points),
            chart=pnl_chart(symbol, points),
            owner=symbol_owner(symbol),
            last_run=ReconcileRun.objects.filter(symbol=symbol).order_by("-started_at", "-id").first(),
            open_buys=live.filter(side="buy").count(),
            open_sells=live.filter(side="sell").count(),
            links={
                "symbol": reverse("admin:trading_symbol_change", args=[symbol.pk]),
                "orders": reverse("admin:trading_order_changelist") + f"?symbol__id__exact={symbol.pk}&status__in=open,partially_filled,pending,unknown",
                "fills": reverse("admin:trading_fill_changelist") + f"?symbol__id__exact={symbol.pk}",
                "runs": reverse("admin:reconciliation_reconcilerun_changelist") + f"?symbol__id__exact={symbol.pk}",
            },
            futures=futures_view(symbol) if symbol.account.is_futures else None,
        ))
    return cards


def _duration(delta: timedelta) -> str:
    seconds = int(delta.total_seconds())
    if seconds < 120:
        return f"{seconds}s"
    if seconds < 7200:
        return f"{seconds // 60}m {seconds % 60:02d}s"
    if seconds < 172800:
        return f"{seconds // 3600}h {seconds % 3600 // 60:02d}m"
    return f"{seconds // 86400}d"

"""The operator dashboard (an admin page) and the admin's order actions.

Selectors (reads) build what the page shows for each symbol: the grid ladder around the last
seen price, the realised-PnL curve, the symbol's status and owner, its last reconcile run; plus
the bot instances and the recent lock conflicts. `orders_cancel_from_admin` is the service
behind the "cancel selected orders" action: it cancels through the engine, under each order's
cancel lock, exactly as the bot does. The CSV exports stream Decimals as exact strings.

The current price is not stored in the database: the page shows the *last seen price*, the
price of the latest fill, else the midpoint of the best open buy and sell, else the lattice
anchor (the first price the bot saw).
"""
from __future__ import annotations

import csv
import logging
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal, localcontext

from django.contrib import admin
from django.core.exceptions import PermissionDenied
from django.db.models import QuerySet
from django.conf import settings
from django.http import HttpRequest, HttpResponse, StreamingHttpResponse
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils import timezone
from django.utils.safestring import mark_safe

from locking.models import LockEvent
from reconciliation.models import ReconcileRun
from trading import charts, grid, liveness, pnl, services
from trading.models import LIVE_STATUSES, BotInstance, Fill, GridSlot, Order, OrderStatus, Symbol

log = logging.getLogger("quantmesh.admin")

REFRESH_SECONDS = 5
LADDER_MARGIN = 2  # levels shown beyond the buy and sell windows
LADDER_MAX_ROWS = 41
CHART_MAX_POINTS = 400
LOCK_EVENTS_SHOWN = 15
CANCEL_MAX_ORDERS = 100  # orders one admin cancel may send (one exchange request each)

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

    @property
    def realised_display(self) -> str:
        return show(self.realised, 8)

    @property
    def base(self) -> str:
        return self.symbol.symbol.split("/")[0]

    @property
    def quote(self) -> str:
        return self.symbol.symbol.split("/")[1]


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


# --- the page ------------------------------------------------------------------------------------
DASHBOARD_PERMISSIONS = ("trading.view_symbol", "trading.view_order")


def dashboard_view(request: HttpRequest) -> HttpResponse:
    """`/admin/dashboard/`. Mounted through `admin.site.admin_view`, so only active staff get
    here; they also need the view permission on symbols and orders."""
    if not request.user.has_perms(DASHBOARD_PERMISSIONS):
        raise PermissionDenied
    symbols = Symbol.objects.select_related("account").order_by("account__name", "symbol")
    refresh = request.GET.get("refresh") != "0"
    context = {
        **admin.site.each_context(request),
        "title": "Dashboard",
        "cards": symbol_cards(symbols),
        "instances": instances_overview(),
        "lock_events": recent_lock_events(),
        "stale_after": int(liveness.SINGLE_INSTANCE_STALE_AFTER.total_seconds()),
        "lease_ttl": settings.QM_LEASE_TTL_MS / 1000,
        "refresh_seconds": REFRESH_SECONDS if refresh else None,
        "now": timezone.now(),
        "can_change_symbols": request.user.has_perm("trading.change_symbol"),
    }
    return TemplateResponse(request, "admin/quantmesh/dashboard.html", context)


# --- admin services: cancel orders -------------------------------------------------------------
@dataclass(frozen=True)
class CancelOutcome:
    client_order_id: str
    ok: bool
    detail: str


def orders_cancel_from_admin(orders: Iterable[Order], user) -> list[CancelOutcome]:
    """Cancel live orders for an operator: per symbol one gateway, one lock service and one
    engine writing as `admin:<username>` with the symbol's current fence token; each order goes
    through `SymbolEngine.cancel`, under its cancel lock, and the exchange's answer is applied
    to the ledger. Final orders are left alone. Never raises for one order's trouble: every
    order gets an outcome."""
    from locking.setup import lock_service_from_settings
    from trading.engine import SymbolEngine, TickResult
    from trading.errors import IllegalTransition, TradingError
    from trading.exchange.errors import ExchangeFailure
    from trading.exchange.session import session_for

    writer_id = f"admin:{user.get_username()}"[:64]
    by_symbol: dict[int, list[Order]] = {}
    for order in orders:
        by_symbol.setdefault(order.symbol_id, []).append(order)
    outcomes: list[CancelOutcome] = []
    for symbol_id, group in by_symbol.items():
        symbol = Symbol.objects.select_related("account").get(pk=symbol_id)
        live = []
        for order in group:
            order.refresh_from_db()
            if order.is_live:
                live.append(order)
            else:
                outcomes.append(CancelOutcome(order.client_order_id, False, f"already {order.get_status_display()}"))
        if not live:
            continue
        try:
            gateway = session_for(symbol.account).gateway()
            locks = lock_service_from_settings(instance_id=writer_id)
        except Exception as exc:  # no exchange or no lock service: nothing is sent (fail closed)
            log.error("admin cancel for %s could not start: %s", symbol, exc)
            outcomes += [CancelOutcome(o.client_order_id, False, f"not sent: {exc}") for o in live]
            continue
        try:
            engine = SymbolEngine(symbol, gateway, locks, writer=services.Writer(writer_id, symbol.fence_token))
            for order in live:
                result = TickResult()
                try:
                    done = engine.cancel(order, result, reason=f"canceled from the admin by {user.get_username()}")
                except IllegalTransition:
                    # The bot applied the exchange's answer first (its own sync saw the cancel).
                    order.refresh_from_db()
                    done = order.status == OrderStatus.CANCELED
                    if not done:
                        outcomes.append(CancelOutcome(order.client_order_id, False, f"already {order.get_status_display()}"))
                        continue
                except (ExchangeFailure, TradingError) as exc:
                    outcomes.append(CancelOutcome(order.client_order_id, False, f"failed: {exc}"))
                    continue
                order.refresh_from_db()
                if done:
                    outcomes.append(CancelOutcome(order.client_order_id, True, order.get_status_display()))
                elif result.conflicts:
                    outcomes.append(CancelOutcome(order.client_order_id, False, "cancel lock busy (another process is canceling it)"))
                elif result.lock_errors:
                    outcomes.append(CancelOutcome(order.client_order_id, False, "lock service unavailable; not sent"))
                elif not order.is_live:
                    outcomes.append(CancelOutcome(order.client_order_id, False, f"already {order.get_status_display()} at the exchange"))
                else:
                    outcomes.append(CancelOutcome(order.client_order_id, False, "not confirmed by the exchange; the next sync resolves it"))
        finally:
            locks.close()
    for outcome in outcomes:
        log.info("admin %s cancel %s: %s", writer_id, outcome.client_order_id, outcome.detail)
    return outcomes


# --- admin services: CSV exports ---------------------------------------------------------------
ORDER_COLUMNS = [
    "id", "created_at", "account", "symbol", "client_order_id", "exchange_order_id", "side", "level", "seq", "price",
    "amount", "filled_amount", "average_price", "fee", "fee_currency", "status", "post_only", "instance_id",
    "fence_token", "sent_at", "closed_at", "last_error",
]
FILL_COLUMNS = [
    "id", "traded_at", "account", "symbol", "exchange_trade_id", "exchange_order_id", "client_order_id", "side",
    "price", "amount", "fee", "fee_currency", "is_maker",
]


class _Echo:
    def write(self, value: str) -> str:
        return value


def csv_cell(value) -> str:
    """Decimals as exact plain strings (never an exponent), datetimes in ISO 8601 (UTC), None
    empty; text that a spreadsheet would run as a formula is quoted with a leading apostrophe."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, Decimal):
        return format(value, "f")
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, int):
        return str(value)
    text = str(value)
    if text[:1] in ("=", "+", "-", "@", "\t", "\r"):
        return "'" + text
    return text


def _order_rows(queryset: QuerySet) -> Iterator[list]:
    yield ORDER_COLUMNS
    for o in queryset.select_related("symbol", "symbol__account").order_by("id").iterator(chunk_size=2000):
        yield [
            o.pk, o.created_at, o.symbol.account.name, o.symbol.symbol, o.client_order_id, o.exchange_order_id, o.side,
            o.level, o.seq, o.price, o.amount, o.filled_amount, o.average_price, o.fee, o.fee_currency, o.status,
            o.post_only, o.instance_id, o.fence_token, o.sent_at, o.closed_at, o.last_error,
        ]


def _fill_rows(queryset: QuerySet) -> Iterator[list]:
    yield FILL_COLUMNS
    for f in queryset.select_related("symbol", "account", "order").order_by("id").iterator(chunk_size=2000):
        yield [
            f.pk, f.traded_at, f.account.name, f.symbol.symbol, f.exchange_trade_id, f.exchange_order_id,
            f.order.client_order_id if f.order else "", f.side, f.price, f.amount, f.fee, f.fee_currency, f.is_maker,
        ]


def _csv_response(rows: Iterator[list], name: str) -> StreamingHttpResponse:
    writer = csv.writer(_Echo())
    response = StreamingHttpResponse(
        (writer.writerow([csv_cell(value) for value in row]) for row in rows),
        content_type="text/csv; charset=utf-8",
    )
    stamp = timezone.now().strftime("%Y%m%d-%H%M%S")
    response["Content-Disposition"] = f'attachment; filename="{name}-{stamp}.csv"'
    return response


def orders_csv_response(queryset: QuerySet) -> StreamingHttpResponse:
    return _csv_response(_order_rows(queryset), "orders")


def fills_csv_response(queryset: QuerySet) -> StreamingHttpResponse:
    return _csv_response(_fill_rows(queryset), "fills")

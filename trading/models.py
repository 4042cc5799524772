"""The trading domain: accounts, symbols, the order-intent ledger, fills and bot instances.

Rules that protect money are enforced by the database itself (unique and check constraints)
on SQLite, PostgreSQL and MySQL/MariaDB alike; model validation repeats them with messages
that name the field. Writes go through `trading.services`.
"""
from __future__ import annotations

import os
from decimal import Decimal

from django.core.exceptions import ObjectDoesNotExist, ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator, RegexValidator
from django.db import models
from django.db.models import Q
from django.db.models.lookups import GreaterThan, GreaterThanOrEqual, LessThan
from django.utils import timezone

from trading import grid
from trading.fields import Num, money

ENV_NAME = RegexValidator(r"^[A-Z_][A-Z0-9_]*$", "Must be an environment variable name (A-Z, 0-9, _).")
CLIENT_ID = RegexValidator(r"^[.A-Za-z0-9:/_-]{1,36}$", "Exchange client ids allow 1-36 of . A-Z a-z 0-9 : / _ -")
POSITIVE = MinValueValidator(Decimal("0.000000000000000001"), "Must be greater than 0.")
NON_NEGATIVE = MinValueValidator(Decimal("0"), "Must not be negative.")


def positive(field: str) -> models.CheckConstraint:
    return models.CheckConstraint(
        condition=GreaterThan(Num(field), 0),
        name=f"%(class)s_{field}_gt_0",
        violation_error_message=f"{field} must be greater than 0.",
    )


def non_negative(field: str) -> models.CheckConstraint:
    return models.CheckConstraint(
        condition=GreaterThanOrEqual(Num(field), 0),
        name=f"%(class)s_{field}_gte_0",
        violation_error_message=f"{field} must not be negative.",
    )


def at_least(field: str, minimum: int) -> models.CheckConstraint:
    return models.CheckConstraint(
        condition=Q(**{f"{field}__gte": minimum}),
        name=f"%(class)s_{field}_gte_{minimum}",
        violation_error_message=f"{field} must be at least {minimum}.",
    )


class MarketType(models.TextChoices):
    SPOT = "spot", "spot"
    USDM = "usdm", "USDⓈ-M perpetual futures"


class MarginMode(models.TextChoices):
    KEEP = "", "as set on the exchange"
    CROSS = "cross", "cross"
    ISOLATED = "isolated", "isolated"


class ExchangeAccount(models.Model):
    """An account at an exchange. Secrets are never stored: only the names of the environment
    variables (or `NAME_FILE` files) that hold them."""

    name = models.SlugField(max_length=64, unique=True)
    exchange_id = models.CharField(max_length=32, help_text="ccxt exchange id, e.g. binance")
    market_type = models.CharField(
        max_length=8, choices=MarketType.choices, default=MarketType.SPOT,
        help_text="Spot, or USDⓈ-M perpetual futures in one-way mode (Binance's fapi).",
    )
    paper = models.BooleanField(default=True, help_text="Trade against the built-in simulator.")
    base_url = models.URLField(blank=True, help_text="API base URL override (the simulator's URL for paper).")
    api_key_env = models.CharField(max_length=128, blank=True, validators=[ENV_NAME])
    api_secret_env = models.CharField(max_length=128, blank=True, validators=[ENV_NAME])
    client_id_prefix = models.CharField(
        max_length=8,
        default="qm",
        validators=[RegexValidator(r"^[a-z0-9]{1,8}$", "1-8 lowercase letters or digits.")],
        help_text="Prefix of every client order id QuantMesh sends; orders without it are foreign.",
    )
    created_at = models.DateTimeField(default=timezone.now, editable=False)

    class Meta:
        ordering = ["name"]
        constraints = [
            models.CheckConstraint(
                condition=Q(market_type__in=MarketType.values),
                name="account_market_type_valid",
                violation_error_message="market_type must be spot or usdm.",
            ),
        ]

    def __str__(self) -> str:
        kind = ", futures" if self.market_type == MarketType.USDM else ""
        return f"{self.name} ({self.exchange_id}{kind}{', paper' if self.paper else ''})"

    @property
    def is_futures(self) -> bool:
        return self.market_type == MarketType.USDM

    def clean(self) -> None:
        import ccxt

        if self.exchange_id and self.exchange_id not in ccxt.exchanges:
            raise ValidationError({"exchange_id": f"{self.exchange_id!r} is not a ccxt exchange id."})

    def credentials(self) -> tuple[str, str]:
        """(api key, secret) read from the environment now; empty strings when unset."""
        return _read_secret(self.api_key_env), _read_secret(self.api_secret_env)


def _read_secret(var: str) -> str:
    if not var:
        return ""
    path = os.environ.get(f"{var}_FILE")
    if path:
        with open(path) as fh:
            return fh.read().strip()
    return os.environ.get(var, "")


class Symbol(models.Model):
    """One traded market and its grid parameters (the QuantMesh `trading.symbols[]` entry)."""

    class Status(models.TextChoices):
        RUNNING = "running", "running"
        PAUSED = "paused", "paused"
        STOPPED = "stopped", "stopped"

    account = models.ForeignKey(ExchangeAccount, on_delete=models.PROTECT, related_name="symbols")
    symbol = models.CharField(
        max_length=32,
        validators=[RegexValidator(r"^[A-Z0-9]+/[A-Z0-9]+$", "Use the unified form BASE/QUOTE, e.g. BTC/USDT.")],
    )
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.RUNNING, db_index=True)
    pause_reason = models.CharField(max_length=200, blank=True)
    paused_until = models.DateTimeField(null=True, blank=True, help_text="Resume automatically after this time.")

    # Grid parameters (names as in QuantMesh config.yaml).
    price_interval = money(validators=[POSITIVE], help_text="Distance between grid levels, in quote currency.")
    order_quantity = money(validators=[POSITIVE], help_text="Quote-currency value of each buy (e.g. 30 USDT).")
    min_order_value = money(default=Decimal("20"), validators=[NON_NEGATIVE])
    buy_window_size = models.PositiveIntegerField(default=10, validators=[MinValueValidator(1)])
    sell_window_size = models.PositiveIntegerField(default=10, validators=[MinValueValidator(1)])
    reconcile_interval = models.PositiveIntegerField(default=60, validators=[MinValueValidator(1)], help_text="seconds")
    order_cleanup_threshold = models.PositiveIntegerField(default=50, validators=[MinValueValidator(1)])
    cleanup_batch_size = models.PositiveIntegerField(default=10, validators=[MinValueValidator(1)])
    margin_lock_duration_seconds = models.PositiveIntegerField(default=10)
    position_safety_check = models.PositiveIntegerField(
        default=100, help_text="Grid buys the free quote balance must cover at start (0 disables)."
    )
    max_grid_layers = models.PositiveIntegerField(default=0, help_text="Most filled slots at once (0: no limit).")
    allow_unprofitable = models.BooleanField(
        default=False, help_text="Trade even when one grid step does not cover the round-trip fees.")
    stop_loss_ratio = money(
        default=Decimal("0"),
        validators=[NON_NEGATIVE],
        help_text="Pause when unrealised loss / position value reaches this (0 disables).",
    )

    # Futures only (the account's market_type is usdm).
    leverage = models.PositiveSmallIntegerField(
        null=True, blank=True, validators=[MinValueValidator(1), MaxValueValidator(125)],
        help_text="Futures: set on the exchange before trading (empty: keep the exchange's, only check it).",
    )
    margin_mode = models.CharField(max_length=8, choices=MarginMode.choices, blank=True, default=MarginMode.KEEP)
    max_leverage = models.PositiveSmallIntegerField(
        default=10, validators=[MinValueValidator(1), MaxValueValidator(125)],
        help_text="Futures: do not trade while the exchange's leverage is above this.",
    )
    liquidation_buffer = money(
        default=Decimal("0.1"), validators=[NON_NEGATIVE],
        help_text="Futures: pause buys while the mark is within this fraction of the liquidation price (0 disables).",
    )

    # Lattice and exchange rules, persisted so restarts keep the same levels.
    anchor_price = money(null=True, blank=True, editable=False)
    tick_size = money(null=True, blank=True, editable=False)
    step_size = money(null=True, blank=True, editable=False)
    min_notional = money(null=True, blank=True, editable=False)

    # Highest fencing token seen for this symbol; ledger writes need token >= it.
    fence_token = models.BigIntegerField(default=0, editable=False)
    # Highest reconcile-lock token that wrote a reconcile run: a paused reconciler cannot write.
    reconcile_token = models.BigIntegerField(default=0, editable=False)
    # Multi-instance mode: the instance holding the symbol's lease, and the lease's token.
    owner_instance = models.CharField(max_length=64, blank=True, editable=False)
    owner_token = models.BigIntegerField(default=0, editable=False)
    owner_since = models.DateTimeField(null=True, blank=True, editable=False)
    # Base-asset holdings at the exchange that the grid did not buy (set by the first reconcile).
    base_offset = money(null=True, blank=True, editable=False)
    # Futures: the part of the exchange position the grid did not open (signed; first reconcile).
    position_offset = money(null=True, blank=True, editable=False)
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["account__name", "symbol"]
        constraints = [
            models.UniqueConstraint(fields=["account", "symbol"], name="symbol_unique_per_account"),
            positive("price_interval"),
            positive("order_quantity"),
            non_negative("min_order_value"),
            non_negative("stop_loss_ratio"),
            models.CheckConstraint(
                condition=LessThan(Num("stop_loss_ratio"), 1),
                name="symbol_stop_loss_ratio_lt_1",
                violation_error_message="stop_loss_ratio must be below 1.",
            ),
            at_least("buy_window_size", 1),
            at_least("sell_window_size", 1),
            at_least("reconcile_interval", 1),
            at_least("order_cleanup_threshold", 1),
            at_least("cleanup_batch_size", 1),
            at_least("fence_token", 0),
            models.CheckConstraint(
                condition=Q(status__in=["running", "paused", "stopped"]),
                name="symbol_status_valid",
                violation_error_message="status must be running, paused or stopped.",
            ),
            models.CheckConstraint(
                condition=Q(leverage__isnull=True) | Q(leverage__gte=1, leverage__lte=125),
                name="symbol_leverage_1_to_125",
                violation_error_message="leverage must be from 1 to 125.",
            ),
            models.CheckConstraint(
                condition=Q(max_leverage__gte=1, max_leverage__lte=125),
                name="symbol_max_leverage_1_to_125",
                violation_error_message="max_leverage must be from 1 to 125.",
            ),
            models.CheckConstraint(
                condition=Q(margin_mode__in=MarginMode.values),
                name="symbol_margin_mode_valid",
                violation_error_message="margin_mode must be empty, cross or isolated.",
            ),
            non_negative("liquidation_buffer"),
            models.CheckConstraint(
                condition=LessThan(Num("liquidation_buffer"), 1),
                name="symbol_liquidation_buffer_lt_1",
                violation_error_message="liquidation_buffer must be below 1.",
            ),
        ]

    def clean(self) -> None:
        if self.leverage is not None and self.leverage > self.max_leverage:
            raise ValidationError({"leverage": f"leverage {self.leverage} is above max_leverage {self.max_leverage}."})

    def __str__(self) -> str:
        return f"{self.symbol}@{self.account.name}"

    def fee_problem(self, price: Decimal | None = None) -> str:
        """Why this grid cannot make money at `price` (by default the anchor, or the paper
        simulator's price) and the account's maker fee, with the numbers; "" when it can, when
        allow_unprofitable is set, or when no price is known yet (runbot checks at start)."""
        from trading.exchange.dialects import dialect_for
        from trading.simulator.config import PRESETS

        if self.allow_unprofitable or not self.price_interval or self.price_interval <= 0:
            return ""
        try:
            account: ExchangeAccount | None = self.account
        except ObjectDoesNotExist:
            account = None
        if price is None:
            preset = PRESETS.get(self.symbol, {}).get("price") if account is not None and account.paper else None
            price = self.anchor_price or preset
        if price is None or price <= 0:
            return ""
        exchange = "binanceusdm" if account is not None and account.is_futures else "binance"
        fee = dialect_for(exchange).maker_fee
        return grid.unprofitable_step(price, self.price_interval, fee, self.tick_size or Decimal("0.01")) or ""

    @property
    def market_id(self) -> str:
        return self.symbol.replace("/", "")


class OrderStatus(models.TextChoices):
    PENDING = "pending", "pending"  # row written, request not (yet) acknowledged
    UNKNOWN = "unknown", "unknown"  # ambiguous reply: may or may not be at the exchange
    OPEN = "open", "open"
    PARTIALLY_FILLED = "partially_filled", "partially filled"
    FILLED = "filled", "filled"
    CANCELED = "canceled", "canceled"
    REJECTED = "rejected", "rejected"
    EXPIRED = "expired", "expired"
    NOT_PLACED = "not_placed", "not placed"  # never reached the exchange (query found nothing)


S = OrderStatus
# The one table of allowed transitions. A status missing on the left is final.
ORDER_TRANSITIONS: dict[str, frozenset[str]] = {
    S.PENDING: frozenset({S.OPEN, S.PARTIALLY_FILLED, S.FILLED, S.REJECTED, S.UNKNOWN, S.CANCELED, S.EXPIRED, S.NOT_PLACED}),
    S.UNKNOWN: frozenset({S.OPEN, S.PARTIALLY_FILLED, S.FILLED, S.REJECTED, S.CANCELED, S.EXPIRED, S.NOT_PLACED}),
    S.OPEN: frozenset({S.PARTIALLY_FILLED, S.FILLED, S.CANCELED, S.EXPIRED}),
    S.PARTIALLY_FILLED: frozenset({S.PARTIALLY_FILLED, S.FILLED, S.CANCELED, S.EXPIRED}),
}
LIVE_STATUSES = frozenset(ORDER_TRANSITIONS)  # statuses that hold a grid slot
FINAL_STATUSES = frozenset(OrderStatus.values) - LIVE_STATUSES
del S


class Side(models.TextChoices):
    BUY = "buy", "buy"
    SELL = "sell", "sell"


class Order(models.Model):
    """The intent ledger: every order is a row before it is an HTTP request."""

    symbol = models.ForeignKey(Symbol, on_delete=models.PROTECT, related_name="orders")
    client_order_id = models.CharField(max_length=36, unique=True, validators=[CLIENT_ID])
    # "<symbol pk>:<slot level>:<side>" while the order is live, NULL once it is final: the
    # database refuses a second live order for one slot (NULLs never collide).
    active_slot = models.CharField(max_length=64, null=True, blank=True, unique=True, editable=False)
    side = models.CharField(max_length=4, choices=Side.choices)
    level = models.IntegerField(help_text="Grid slot level (the buy level of the slot).")
    seq = models.PositiveIntegerField(
        default=0, help_text="How many orders this slot and side had before this one (part of the client order id)."
    )
    price = money(validators=[POSITIVE])
    amount = money(validators=[POSITIVE])
    post_only = models.BooleanField(default=True)
    status = models.CharField(max_length=16, choices=OrderStatus.choices, default=OrderStatus.PENDING, db_index=True)
    exchange_order_id = models.CharField(max_length=64, null=True, blank=True)
    filled_amount = money(default=Decimal("0"), validators=[NON_NEGATIVE])
    average_price = money(null=True, blank=True)
    fee = money(default=Decimal("0"), validators=[NON_NEGATIVE])
    fee_currency = models.CharField(max_length=16, blank=True)
    instance_id = models.CharField(max_length=64, help_text="Bot instance that wrote the intent.")
    fence_token = models.BigIntegerField(default=0)
    last_error = models.CharField(max_length=300, blank=True)
    cancel_requested_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now, db_index=True)
    sent_at = models.DateTimeField(null=True, blank=True)
    closed_at = models.DateTimeField(null=True, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.UniqueConstraint(fields=["symbol", "exchange_order_id"], name="order_exchange_id_unique"),
            models.UniqueConstraint(fields=["symbol", "level", "side", "seq"], name="order_intent_unique"),
            positive("price"),
            positive("amount"),
            non_negative("filled_amount"),
            non_negative("fee"),
            models.CheckConstraint(
                condition=Q(side__in=["buy", "sell"]), name="order_side_valid", violation_error_message="side must be buy or sell."
            ),
            models.CheckConstraint(
                condition=Q(status__in=OrderStatus.values), name="order_status_valid",
                violation_error_message="status is not a known order status.",
            ),
            # A final order never holds a slot.
            models.CheckConstraint(
                condition=Q(active_slot__isnull=True) | Q(status__in=sorted(LIVE_STATUSES)),
                name="order_final_has_no_slot",
                violation_error_message="a final order cannot hold an active slot.",
            ),
            models.CheckConstraint(
                condition=GreaterThanOrEqual(Num("amount"), Num("filled_amount")),
                name="order_filled_not_above_amount",
                violation_error_message="filled_amount cannot exceed amount.",
            ),
        ]
        indexes = [models.Index(fields=["symbol", "status"], name="order_symbol_status")]

    def __str__(self) -> str:
        return self.client_order_id

    @property
    def is_live(self) -> bool:
        return self.status in LIVE_STATUSES

    @property
    def remaining(self) -> Decimal:
        return self.amount - self.filled_amount


class OrderEvent(models.Model):
    """Audit trail: one row per status transition (and per notable change) of an order."""

    order = models.ForeignKey(Order, on_delete=models.CASCADE, related_name="events")
    from_status = models.CharField(max_length=16, blank=True)
    to_status = models.CharField(max_length=16)
    note = models.CharField(max_length=300, blank=True)
    instance_id = models.CharField(max_length=64, blank=True)
    fence_token = models.BigIntegerField(default=0)
    created_at = models.DateTimeField(default=timezone.now, db_index=True)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"{self.order_id}: {self.from_status or '-'} -> {self.to_status}"


class Fill(models.Model):
    """An exchange trade. Append-only; unique per account and exchange trade id, so applying
    the same trade twice is a no-op."""

    account = models.ForeignKey(ExchangeAccount, on_delete=models.PROTECT, related_name="fills")
    symbol = models.ForeignKey(Symbol, on_delete=models.PROTECT, related_name="fills")
    order = models.ForeignKey(Order, on_delete=models.PROTECT, related_name="fills", null=True, blank=True)
    exchange_trade_id = models.CharField(max_length=64)
    exchange_order_id = models.CharField(max_length=64, blank=True)
    side = models.CharField(max_length=4, choices=Side.choices)
    price = money(validators=[POSITIVE])
    amount = money(validators=[POSITIVE])
    fee = money(default=Decimal("0"), validators=[NON_NEGATIVE])
    fee_currency = models.CharField(max_length=16, blank=True)
    is_maker = models.BooleanField(null=True)
    realized_pnl = money(null=True, blank=True, help_text="Futures: the exchange's realised PnL of this trade "
                                                            "(average-entry based, before fees; for audit).")
    traded_at = models.DateTimeField()
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-traded_at", "-id"]
        constraints = [
            models.UniqueConstraint(fields=["account", "exchange_trade_id"], name="fill_trade_unique_per_account"),
            positive("price"),
            positive("amount"),
            non_negative("fee"),
        ]

    def __str__(self) -> str:
        return f"{self.side} {self.amount} {self.symbol.symbol} @ {self.price}"


class FundingPayment(models.Model):
    """A funding payment of a futures position as the exchange booked it (income FUNDING_FEE).
    Append-only; unique per account and exchange transaction id, so storing it twice is a no-op."""

    account = models.ForeignKey(ExchangeAccount, on_delete=models.PROTECT, related_name="funding_payments")
    symbol = models.ForeignKey(Symbol, on_delete=models.PROTECT, related_name="funding_payments")
    exchange_tran_id = models.CharField(max_length=64)
    amount = money(help_text="Signed, in the asset: negative was paid, positive received.")
    asset = models.CharField(max_length=16)
    funded_at = models.DateTimeField()
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-funded_at", "-id"]
        constraints = [
            models.UniqueConstraint(fields=["account", "exchange_tran_id"], name="funding_unique_per_account"),
        ]

    def __str__(self) -> str:
        return f"funding {self.amount} {self.asset} {self.symbol.symbol} at {self.funded_at:%Y-%m-%d %H:%M}"


class PositionSnapshot(models.Model):
    """A futures position and its margin as the exchange reported them, one row per reconcile
    pass: what the dashboard shows and the liquidation watch reads."""

    symbol = models.ForeignKey(Symbol, on_delete=models.CASCADE, related_name="position_snapshots")
    qty = money(help_text="Signed contracts: long > 0.")
    entry_price = money()
    mark_price = money()
    unrealized_pnl = money()
    liquidation_price = money(null=True, blank=True)
    leverage = models.PositiveSmallIntegerField(null=True, blank=True)
    margin_mode = models.CharField(max_length=8, blank=True)
    wallet_balance = money()
    available_balance = money()
    maint_margin = money()
    taken_at = models.DateTimeField(default=timezone.now, db_index=True)

    class Meta:
        ordering = ["-taken_at", "-id"]

    def __str__(self) -> str:
        return f"{self.symbol.symbol} {self.qty} @ {self.entry_price} ({self.taken_at:%Y-%m-%d %H:%M:%S})"


class GridSlot(models.Model):
    """Persistent state of one grid slot: what a filled buy holds and how many round trips the
    slot has completed. Survives restarts and takeovers."""

    symbol = models.ForeignKey(Symbol, on_delete=models.CASCADE, related_name="slots")
    level = models.IntegerField()
    holding = money(default=Decimal("0"), validators=[NON_NEGATIVE], help_text="Base amount bought and not yet sold.")
    cost = money(default=Decimal("0"), validators=[NON_NEGATIVE], help_text="Buy price x amount of the holding (fees are charged to realised PnL).")
    round_trips = models.PositiveIntegerField(default=0)
    realized_pnl = money(default=Decimal("0"), help_text="Sum of (sell - buy) x amount minus fees, in quote.")
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["symbol", "-level"]
        constraints = [
            models.UniqueConstraint(fields=["symbol", "level"], name="slot_unique_level"),
            non_negative("holding"),
            non_negative("cost"),
        ]

    def __str__(self) -> str:
        return f"{self.symbol.symbol} level {self.level}"


class BotInstance(models.Model):
    """A running (or finished) `runbot` process; the heartbeat shows it is alive."""

    instance_id = models.CharField(max_length=64, unique=True)
    host = models.CharField(max_length=255)
    pid = models.PositiveIntegerField()
    version = models.CharField(max_length=32)
    lock_backend = models.CharField(max_length=16, default="nop")
    started_at = models.DateTimeField(default=timezone.now)
    last_heartbeat = models.DateTimeField(default=timezone.now, db_index=True)
    feed = models.CharField(max_length=255, blank=True, default="",
                            help_text="Where the bot takes prices and fills from, per account, at its last heartbeat.")
    stopped_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-last_heartbeat"]

    def __str__(self) -> str:
        return self.instance_id

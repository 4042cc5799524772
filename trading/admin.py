"""The operator UI. Ledger rows (orders, events, fills, slots) are read-only: changes go through
admin actions that call `trading.services`."""
from __future__ import annotations

from collections.abc import Callable

from django import forms
from django.contrib import admin, messages
from django.db import models
from django.http import HttpRequest
from django.utils.html import format_html

from trading import admin_actions, exports, services
from trading.models import (
    BotInstance,
    ExchangeAccount,
    Fill,
    FundingPayment,
    GridSlot,
    Order,
    OrderEvent,
    PositionSnapshot,
    Symbol,
)


class ReadOnlyAdmin(admin.ModelAdmin):
    """Rows written only by the bot: viewable, never added, edited or deleted by hand."""

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


@admin.register(ExchangeAccount)
class ExchangeAccountAdmin(admin.ModelAdmin):
    # A base URL typed without a scheme is taken as http:// (the simulator's); real exchanges need none.
    formfield_overrides = {models.URLField: {"assume_scheme": "http"}}
    list_display = ["name", "exchange_id", "market_type", "paper", "base_url", "api_key_env", "client_id_prefix"]
    list_filter = ["exchange_id", "market_type", "paper"]
    search_fields = ["name"]
    readonly_fields = ["created_at"]
    fieldsets = [
        (None, {"fields": ["name", "exchange_id", "market_type", "paper", "base_url", "client_id_prefix"]}),
        (
            "Credentials",
            {
                "fields": ["api_key_env", "api_secret_env"],
                "description": "Names of the environment variables (or NAME_FILE files) holding the key and "
                "secret. The secrets themselves are never stored or shown.",
            },
        ),
        (None, {"fields": ["created_at"]}),
    ]


class SymbolForm(forms.ModelForm):
    class Meta:
        model = Symbol
        fields = "__all__"

    def clean(self):
        data = super().clean() or {}
        account = data.get("account") or getattr(self.instance, "account", None)
        if data.get("price_interval") and data.get("symbol") and account is not None:
            probe = Symbol(account=account, symbol=data["symbol"], price_interval=data["price_interval"],
                           allow_unprofitable=bool(data.get("allow_unprofitable")),
                           anchor_price=self.instance.anchor_price, tick_size=self.instance.tick_size)
            problem = probe.fee_problem()
            if problem:
                self.add_error("price_interval", f"{problem}; or tick allow unprofitable to trade it anyway.")
        return data


@admin.register(Symbol)
class SymbolAdmin(admin.ModelAdmin):
    form = SymbolForm
    list_display = [
        "symbol", "account", "status_badge", "price_interval", "order_quantity", "buy_window_size",
        "sell_window_size", "anchor_price", "owner_instance", "fence_token", "updated_at",
    ]
    list_filter = ["status", "account"]
    search_fields = ["symbol", "account__name"]
    list_select_related = ["account"]
    readonly_fields = [
        "status", "pause_reason", "paused_until", "anchor_price", "tick_size", "step_size", "min_notional",
        "fence_token", "owner_instance", "owner_token", "owner_since", "base_offset", "position_offset", "created_at",
        "updated_at",
    ]
    actions = ["pause_symbols", "resume_symbols", "stop_symbols", "reconcile_now"]
    fieldsets = [
        (None, {"fields": ["account", "symbol", "status", "pause_reason", "paused_until"]}),
        (
            "Grid",
            {
                "fields": [
                    "price_interval", "order_quantity", "min_order_value", "buy_window_size", "sell_window_size",
                    "order_cleanup_threshold", "cleanup_batch_size",
                ]
            },
        ),
        (
            "Risk and timing",
            {
                "fields": [
                    "max_grid_layers", "stop_loss_ratio", "position_safety_check", "margin_lock_duration_seconds",
                    "reconcile_interval", "allow_unprofitable",
                ]
            },
        ),
        (
            "Futures (USDⓈ-M accounts only)",
            {"fields": ["leverage", "margin_mode", "max_leverage", "liquidation_buffer"], "classes": ["collapse"]},
        ),
        (
            "Exchange rules and lattice",
            {"fields": ["anchor_price", "tick_size", "step_size", "min_notional", "base_offset", "position_offset"]},
        ),
        ("Ownership (multi-instance mode)", {"fields": ["owner_instance", "owner_token", "owner_since", "fence_token"]}),
    ]

    @admin.display(description="status", ordering="status")
    def status_badge(self, obj: Symbol):
        colour = {"running": "#2e7d32", "paused": "#ef6c00", "stopped": "#757575"}[obj.status]
        title = obj.pause_reason or obj.status
        return format_html('<b style="color:{}" title="{}">{}</b>', colour, title, obj.status)

    @admin.action(description="Pause the selected symbols", permissions=["change"])
    def pause_symbols(self, request, queryset):
        for symbol in queryset:
            services.symbol_pause(symbol, reason=f"paused from the admin by {request.user.get_username()}")
        self.message_user(request, f"Paused {queryset.count()} symbol(s).", messages.SUCCESS)

    @admin.action(description="Stop the selected symbols", permissions=["change"])
    def stop_symbols(self, request, queryset):
        for symbol in queryset:
            services.symbol_stop(symbol, by=f"from the admin by {request.user.get_username()}")
        self.message_user(request, f"Stopped {queryset.count()} symbol(s); their open orders stay at the exchange.",
                          messages.SUCCESS)

    @admin.action(description="Reconcile the selected symbols now", permissions=["change"])
    def reconcile_now(self, request, queryset):
        from reconciliation.models import ReconcileRun
        from reconciliation.services import ReconcileFailed, reconcile_symbols

        try:
            outcomes = reconcile_symbols(
                list(queryset.select_related("account")), trigger=ReconcileRun.Trigger.ADMIN,
                instance_id=f"admin:{request.user.get_username()}", lock_timeout=5,
            )
        except ReconcileFailed as exc:
            self.message_user(request, f"Reconcile could not run: {exc}", messages.ERROR)
            return
        for outcome in outcomes:
            level = messages.SUCCESS if not outcome.unresolved and outcome.status != "failed" else messages.WARNING
            self.message_user(
                request,
                f"{outcome.symbol}: {outcome.status}, {len(outcome.findings)} discrepancies, {outcome.unresolved} need a person"
                + (f" ({outcome.error})" if outcome.error else ""),
                level,
            )

    @admin.action(description="Resume the selected symbols", permissions=["change"])
    def resume_symbols(self, request, queryset):
        for symbol in queryset:
            services.symbol_resume(symbol, by=f"from the admin by {request.user.get_username()}")
        self.message_user(request, f"Resumed {queryset.count()} symbol(s).", messages.SUCCESS)


class OrderEventInline(admin.TabularInline):
    model = OrderEvent
    extra = 0
    can_delete = False
    fields = ("created_at", "from_status", "to_status", "note", "instance_id", "fence_token")
    readonly_fields = fields

    def has_add_permission(self, request, obj=None):
        return False


@admin.register(Order)
class OrderAdmin(ReadOnlyAdmin):
    has_cancel_permission: Callable[[OrderAdmin, HttpRequest], bool]  # set below, with the cancel action
    list_display = [
        "client_order_id", "symbol_name", "side", "level", "price", "amount", "filled_amount", "status",
        "exchange_order_id", "instance_id", "created_at",
    ]
    list_filter = ["status", "side", "symbol__symbol", "symbol__account", "instance_id"]
    search_fields = ["client_order_id", "exchange_order_id", "symbol__symbol"]
    list_select_related = ["symbol"]
    date_hierarchy = "created_at"
    inlines = [OrderEventInline]

    @admin.display(description="symbol", ordering="symbol__symbol")
    def symbol_name(self, obj: Order) -> str:
        return obj.symbol.symbol


@admin.register(OrderEvent)
class OrderEventAdmin(ReadOnlyAdmin):
    list_display = ["created_at", "order", "from_status", "to_status", "note", "instance_id", "fence_token"]
    list_filter = ["to_status", "instance_id"]
    search_fields = ["order__client_order_id", "order__exchange_order_id", "note"]
    list_select_related = ["order"]


@admin.register(Fill)
class FillAdmin(ReadOnlyAdmin):
    list_display = ["traded_at", "symbol_name", "side", "price", "amount", "fee", "fee_currency", "is_maker", "order", "exchange_trade_id"]
    list_filter = ["side", "symbol__symbol", "account", "is_maker"]
    search_fields = ["exchange_trade_id", "exchange_order_id", "order__client_order_id", "symbol__symbol"]
    list_select_related = ["symbol", "order"]
    date_hierarchy = "traded_at"

    @admin.display(description="symbol", ordering="symbol__symbol")
    def symbol_name(self, obj: Fill) -> str:
        return obj.symbol.symbol


@admin.register(FundingPayment)
class FundingPaymentAdmin(ReadOnlyAdmin):
    list_display = ["funded_at", "symbol", "amount", "asset", "exchange_tran_id"]
    list_filter = ["symbol__symbol", "account"]
    search_fields = ["exchange_tran_id", "symbol__symbol"]
    list_select_related = ["symbol", "symbol__account"]
    date_hierarchy = "funded_at"


@admin.register(PositionSnapshot)
class PositionSnapshotAdmin(ReadOnlyAdmin):
    list_display = ["taken_at", "symbol", "qty", "entry_price", "mark_price", "unrealized_pnl", "liquidation_price",
                    "leverage", "margin_mode", "available_balance"]
    list_filter = ["symbol__symbol"]
    list_select_related = ["symbol", "symbol__account"]
    date_hierarchy = "taken_at"


@admin.register(GridSlot)
class GridSlotAdmin(ReadOnlyAdmin):
    list_display = ["symbol", "level", "holding", "cost", "round_trips", "realized_pnl", "updated_at"]
    list_filter = ["symbol__symbol"]
    search_fields = ["symbol__symbol"]
    list_select_related = ["symbol", "symbol__account"]


@admin.register(BotInstance)
class BotInstanceAdmin(ReadOnlyAdmin):
    list_display = ["instance_id", "host", "pid", "version", "lock_backend", "feed", "started_at", "last_heartbeat", "stopped_at"]
    list_filter = ["lock_backend", "host"]
    search_fields = ["instance_id", "host"]


# --- order actions: cancel through the cancel lock; CSV exports of orders and fills --------------
# Orders stay read-only rows: cancelling is an action that asks the exchange through the engine
# (`trading.admin_actions.orders_cancel_from_admin`), and it needs the change permission on orders.


def _has_cancel_permission(self, request) -> bool:
    return request.user.has_perm("trading.change_order")


@admin.action(description="Cancel the selected orders at the exchange", permissions=["cancel"])
def cancel_selected_orders(modeladmin, request, queryset):
    # One exchange request per order inside a web request: keep a selection small enough to answer.
    if queryset.count() > admin_actions.CANCEL_MAX_ORDERS:
        modeladmin.message_user(request, f"Select at most {admin_actions.CANCEL_MAX_ORDERS} orders to cancel at once; "
                                "nothing was sent.", messages.ERROR)
        return
    outcomes = admin_actions.orders_cancel_from_admin(list(queryset.select_related("symbol")), request.user)
    done = [o.client_order_id for o in outcomes if o.ok]
    if done:
        modeladmin.message_user(request, f"Canceled {len(done)} order(s): {_ids(done)}.", messages.SUCCESS)
    refused: dict[str, list[str]] = {}
    for outcome in outcomes:
        if not outcome.ok:
            refused.setdefault(outcome.detail, []).append(outcome.client_order_id)
    for detail, ids in refused.items():
        modeladmin.message_user(request, f"Not canceled, {detail}: {_ids(ids)}.", messages.WARNING)


def _ids(ids: list[str], shown: int = 10) -> str:
    return ", ".join(ids[:shown]) + (f" and {len(ids) - shown} more" if len(ids) > shown else "")


@admin.action(description="Export the selected orders as CSV", permissions=["view"])
def export_orders_csv(modeladmin, request, queryset):
    return exports.orders_csv_response(queryset)


@admin.action(description="Export the selected fills as CSV", permissions=["view"])
def export_fills_csv(modeladmin, request, queryset):
    return exports.fills_csv_response(queryset)


OrderAdmin.has_cancel_permission = _has_cancel_permission
# The stubs declare `actions` per instance (typed by the admin class), hence the ignores.
OrderAdmin.actions = [*(OrderAdmin.actions or ()), cancel_selected_orders, export_orders_csv]  # type: ignore[misc]
FillAdmin.actions = [*(FillAdmin.actions or ()), export_fills_csv]  # type: ignore[misc]

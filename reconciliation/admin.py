from django.contrib import admin
from django.utils.html import format_html

from reconciliation.models import Discrepancy, ReconcileRun


class DiscrepancyInline(admin.TabularInline):
    model = Discrepancy
    extra = 0
    can_delete = False
    fields = ("kind", "action", "client_order_id", "exchange_order_id", "ledger_view", "exchange_view", "note")
    readonly_fields = fields

    def has_add_permission(self, request, obj=None):
        return False


@admin.register(ReconcileRun)
class ReconcileRunAdmin(admin.ModelAdmin):
    list_display = ["started_at", "symbol", "trigger", "status_badge", "orders_checked", "trades_checked",
                    "discrepancies", "repaired", "unresolved", "duration", "instance_id"]
    list_filter = ["status", "trigger", "symbol__symbol", "symbol__account"]
    search_fields = ["symbol__symbol", "instance_id", "items__client_order_id"]
    list_select_related = ["symbol", "symbol__account"]
    date_hierarchy = "started_at"
    inlines = [DiscrepancyInline]
    readonly_fields = [f.name for f in ReconcileRun._meta.fields]

    @admin.display(description="status", ordering="status")
    def status_badge(self, obj):
        colour = {"clean": "#2e7d32", "repaired": "#1565c0", "attention": "#ef6c00", "failed": "#c62828"}.get(obj.status, "#757575")
        return format_html('<b style="color:{}" title="{}">{}</b>', colour, obj.error or obj.status, obj.get_status_display())

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False


@admin.register(Discrepancy)
class DiscrepancyAdmin(admin.ModelAdmin):
    list_display = ["created_at", "kind", "action", "client_order_id", "exchange_order_id", "run", "note"]
    list_filter = ["kind", "action", "run__symbol__symbol"]
    search_fields = ["client_order_id", "exchange_order_id", "note"]
    list_select_related = ["run", "run__symbol"]
    readonly_fields = [f.name for f in Discrepancy._meta.fields]

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

"""Backtests in the admin: the runs side by side, each with its report."""
from __future__ import annotations

from django.contrib import admin
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404
from django.urls import path, reverse
from django.utils.html import format_html

from backtesting.models import BacktestRun
from backtesting.report import pct, render
from trading.admin import ReadOnlyAdmin


@admin.register(BacktestRun)
class BacktestRunAdmin(ReadOnlyAdmin):
    list_display = ["id", "created_at", "symbol", "grid", "return_", "hold", "round_trips", "drawdown", "fees",
                    "candles", "sweep", "rank", "status", "report_link"]
    list_filter = ["status", "symbol"]
    search_fields = ["sweep", "klines"]
    fields = ("created_at", "status", "error", "symbol", "klines", "sweep", "rank", "parameters", "fill_model",
              "candles", "started_ms", "ended_ms", "total_return", "buy_and_hold_return", "realized_pnl", "fees",
              "unrealized_pnl", "max_drawdown", "round_trips", "seconds", "report_link")
    readonly_fields = fields

    def has_delete_permission(self, request, obj=None):
        return bool(request.user.is_superuser)  # runs are results, not ledger: they may be cleared

    @admin.display(description="grid")
    def grid(self, run: BacktestRun) -> str:
        p = run.parameters
        return (f"{p.get('price_interval')} x {p.get('order_quantity')}, "
                f"{p.get('buy_window_size')}/{p.get('sell_window_size')}")

    @admin.display(description="return", ordering="total_return")
    def return_(self, run: BacktestRun) -> str:
        return "" if run.total_return is None else pct(run.total_return)

    @admin.display(description="buy & hold", ordering="buy_and_hold_return")
    def hold(self, run: BacktestRun) -> str:
        return "" if run.buy_and_hold_return is None else pct(run.buy_and_hold_return)

    @admin.display(description="max drawdown", ordering="max_drawdown")
    def drawdown(self, run: BacktestRun) -> str:
        return "" if run.max_drawdown is None else pct(run.max_drawdown)

    @admin.display(description="report")
    def report_link(self, run: BacktestRun) -> str:
        if run.status != BacktestRun.Status.FINISHED:
            return "-"
        return format_html('<a href="{}">report</a>', reverse("admin:backtesting_backtestrun_report", args=[run.pk]))

    def get_urls(self):
        report = self.admin_site.admin_view(self.report_view)
        return [path("<int:pk>/report/", report, name="backtesting_backtestrun_report"), *super().get_urls()]

    def report_view(self, request: HttpRequest, pk: int) -> HttpResponse:
        run = get_object_or_404(BacktestRun, pk=pk, status=BacktestRun.Status.FINISHED)
        if not self.has_view_permission(request, run):
            return HttpResponse(status=403)
        title = f"Backtest {run.pk}: {run.symbol}" + (f", sweep {run.sweep} #{run.rank}" if run.sweep else "")
        return HttpResponse(render(run.results, run.parameters, title=title))

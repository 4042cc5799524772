"""Stored backtests: each run's parameters, its results and the report's data."""
from __future__ import annotations

from django.db import models
from django.utils import timezone

from trading.fields import money


class BacktestRun(models.Model):
    class Status(models.TextChoices):
        FINISHED = "finished"
        FAILED = "failed"

    created_at = models.DateTimeField(default=timezone.now, db_index=True)
    symbol = models.CharField(max_length=32)
    klines = models.CharField(max_length=500, help_text="The candle file replayed.")
    sweep = models.CharField(max_length=64, blank=True, db_index=True,
                             help_text="The sweep this run belongs to (blank: a single run).")
    rank = models.PositiveIntegerField(null=True, blank=True, help_text="Place in its sweep, best first.")
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.FINISHED)
    error = models.TextField(blank=True)
    parameters = models.JSONField(default=dict, help_text="Grid parameters, balances and fees of the run.")
    fill_model = models.CharField(max_length=200, blank=True)
    candles = models.PositiveIntegerField(default=0)
    started_ms = models.BigIntegerField(null=True, blank=True, help_text="Simulated start (ms since 1970).")
    ended_ms = models.BigIntegerField(null=True, blank=True)
    total_return = money(null=True, blank=True)
    buy_and_hold_return = money(null=True, blank=True)
    realized_pnl = money(null=True, blank=True)
    fees = money(null=True, blank=True)
    unrealized_pnl = money(null=True, blank=True)
    max_drawdown = money(null=True, blank=True)
    round_trips = models.PositiveIntegerField(default=0)
    seconds = models.FloatField(default=0, help_text="Wall-clock time the run took.")
    results = models.JSONField(default=dict, help_text="Everything the report shows, as the JSON output gives it.")

    class Meta:
        ordering = ["-created_at", "rank", "-id"]
        indexes = [models.Index(fields=["symbol", "-created_at"])]

    def __str__(self) -> str:
        return f"backtest {self.pk} {self.symbol}" + (f" ({self.sweep} #{self.rank})" if self.sweep else "")

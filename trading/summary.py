"""The daily summary per account: what each symbol did over the last day, for the operator.

Every instance of the bot offers it once the summary hour (`QM_NOTIFY_SUMMARY_HOUR`, UTC) has
passed; its key (account and period) lets only the first one send it. A bot started more than
an hour after the summary hour does not send that day's late.
"""
from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from django.db.models import Sum
from django.utils import timezone

import notifications
from trading import pnl, selectors
from trading.models import LIVE_STATUSES, ExchangeAccount, Fill, GridSlot, Order, OrderStatus, Symbol

LATE_BY_AT_MOST = timedelta(hours=1)
_offered: set[str] = set()  # keys this process has already offered


def period_end(now: datetime, hour: int) -> datetime:
    """The latest summary time (today or yesterday at `hour`:00 UTC) at or before `now`."""
    end = now.astimezone(UTC).replace(hour=hour, minute=0, second=0, microsecond=0)
    return end if end <= now else end - timedelta(days=1)


def account_summary(account: ExchangeAccount, *, start: datetime, end: datetime) -> str:
    lines = [f"account {account.name}, {start:%Y-%m-%d %H:%M} to {end:%Y-%m-%d %H:%M} UTC"]
    totals: dict[str, tuple[int, Decimal, Decimal]] = {}
    for symbol in Symbol.objects.filter(account=account).order_by("symbol"):
        base, quote = symbol.symbol.split("/")
        trips = Order.objects.filter(symbol=symbol, side="sell", status=OrderStatus.FILLED,
                                     closed_at__gte=start, closed_at__lt=end).count()
        series = selectors.pnl_series(symbol)
        realised = _at(series, end) - _at(series, start)
        fees = sum((pnl.fee_in_quote(fee=fee, fee_currency=currency, price=price, base=base, quote=quote)
                    for fee, currency, price in Fill.objects.filter(symbol=symbol, traded_at__gte=start, traded_at__lt=end)
                    .values_list("fee", "fee_currency", "price")), Decimal(0))
        holding = GridSlot.objects.filter(symbol=symbol).aggregate(total=Sum("holding"))["total"] or Decimal(0)
        open_orders = Order.objects.filter(symbol=symbol, status__in=LIVE_STATUSES).count()
        lines.append(f"{symbol.symbol} ({symbol.status}): {trips} round trips, realised {realised:+.4f} {quote}, "
                     f"fees {fees:.4f} {quote}, holding {holding.normalize():f} {base}, {open_orders} open orders")
        before = totals.get(quote, (0, Decimal(0), Decimal(0)))
        totals[quote] = (before[0] + trips, before[1] + realised, before[2] + fees)
    for quote, (trips, realised, fees) in totals.items():
        lines.append(f"total: {trips} round trips, realised {realised:+.4f} {quote}, fees {fees:.4f} {quote}")
    return "\n".join(lines)


def _at(series: list[tuple[datetime, Decimal]], when: datetime) -> Decimal:
    value = Decimal(0)
    for at, total in series:
        if at >= when:
            break
        value = total
    return value


def send_due(accounts: Iterable[ExchangeAccount], *, now: datetime | None = None) -> list[str]:
    """Offer each account's summary for the period that ended at the last summary hour, unless
    it ended more than `LATE_BY_AT_MOST` ago; returns the keys offered."""
    now = now or timezone.now()
    end = period_end(now, notifications.summary_hour())
    if now - end > LATE_BY_AT_MOST:
        return []
    offered = []
    for account in accounts:
        key = f"summary:{account.pk}:{end:%Y-%m-%dT%H}"
        if key in _offered:
            continue
        _offered.add(key)
        text = account_summary(account, start=end - timedelta(days=1), end=end)
        notifications.notify("daily_summary", text, subject=f"account {account.name}", key=key)
        offered.append(key)
    return offered

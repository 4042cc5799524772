"""CSV exports of orders and fills for the admin, streamed; Decimals as exact strings."""
from __future__ import annotations

import csv
from collections.abc import Iterator
from datetime import datetime
from decimal import Decimal

from django.db.models import QuerySet
from django.http import StreamingHttpResponse
from django.utils import timezone

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

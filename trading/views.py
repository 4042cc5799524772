"""The operator dashboard: an admin page of the selectors in `trading.selectors`."""
from __future__ import annotations

from django.conf import settings
from django.contrib import admin
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.utils import timezone

from trading import liveness
from trading.models import Symbol
from trading.selectors import instances_overview, recent_lock_events, symbol_cards

REFRESH_SECONDS = 5
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

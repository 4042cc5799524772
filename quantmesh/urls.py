from django.contrib import admin
from django.urls import include, path
from django.views.generic import RedirectView

from quantmesh import views
from trading.collectors import register_collectors

# Database-derived gauges (open orders, slots, PnL, heartbeats) on the web process's /metrics.
register_collectors()

admin.site.site_header = "QuantMesh"
admin.site.site_title = "QuantMesh"
admin.site.index_title = "Trading"

urlpatterns = [
    path("", RedirectView.as_view(url="/admin/", permanent=False)),
    path("healthz", views.healthz, name="healthz"),
    path("admin/", admin.site.urls),
    path("", include("django_prometheus.urls")),
]

# The trading dashboard lives under /admin/ behind the admin's login, so it must come before the
# admin's own URLs: their last pattern catches every other /admin/ path.
from trading.dashboard import dashboard_view  # noqa: E402

urlpatterns.insert(0, path("admin/dashboard/", admin.site.admin_view(dashboard_view), name="trading-dashboard"))

from django.contrib import admin
from django.urls import path
from django.views.generic import RedirectView

from quantmesh import views
from trading.collectors import register_collectors
from trading.views import dashboard_view

# Database-derived gauges (open orders, slots, PnL, heartbeats) on the web process's /metrics.
register_collectors()

admin.site.site_header = "QuantMesh"
admin.site.site_title = "QuantMesh"
admin.site.index_title = "Trading"

urlpatterns = [
    # The dashboard lives under /admin/ behind the admin's login; it comes before the admin's own
    # URLs, whose last pattern catches every other /admin/ path.
    path("admin/dashboard/", admin.site.admin_view(dashboard_view), name="trading-dashboard"),
    path("", RedirectView.as_view(url="/admin/", permanent=False)),
    path("healthz", views.healthz, name="healthz"),
    path("admin/", admin.site.urls),
    path("metrics", views.metrics, name="prometheus-django-metrics"),
]

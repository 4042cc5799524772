from django.contrib import admin
from django.urls import include, path
from django.views.generic import RedirectView

from quantmesh import views

admin.site.site_header = "QuantMesh"
admin.site.site_title = "QuantMesh"
admin.site.index_title = "Trading"

urlpatterns = [
    path("", RedirectView.as_view(url="/admin/", permanent=False)),
    path("healthz", views.healthz, name="healthz"),
    path("admin/", admin.site.urls),
    path("", include("django_prometheus.urls")),
]

import hmac

from django.conf import settings
from django.db import connection
from django.http import HttpResponse, JsonResponse
from django.views.decorators.http import require_GET
from django_prometheus.exports import ExportToDjangoView


@require_GET
def healthz(request):
    """Liveness plus a real database round trip."""
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
            cursor.fetchone()
    except Exception as exc:  # any database failure makes the check fail
        return JsonResponse({"status": "error", "database": str(exc)[:200]}, status=503)
    return JsonResponse({"status": "ok", "database": connection.vendor})


@require_GET
def metrics(request):
    """Prometheus metrics of the web process; with QM_METRICS_TOKEN set, only for requests that
    carry `Authorization: Bearer <token>`."""
    token = settings.QM_METRICS_TOKEN
    if token:
        given = request.headers.get("Authorization", "")
        if not hmac.compare_digest(given.encode(), f"Bearer {token}".encode()):
            return HttpResponse("metrics need a bearer token\n", status=401, content_type="text/plain",
                                headers={"WWW-Authenticate": "Bearer"})
    return ExportToDjangoView(request)

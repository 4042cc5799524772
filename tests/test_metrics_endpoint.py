"""The web process's /metrics: open by default, behind a bearer token when QM_METRICS_TOKEN is set."""
import pytest

pytestmark = pytest.mark.django_db


def test_metrics_are_served(client):
    response = client.get("/metrics")
    assert response.status_code == 200
    assert b"django_http_requests" in response.content or b"python_info" in response.content


def test_metrics_token_is_enforced(client, settings):
    settings.QM_METRICS_TOKEN = "s3cret-token"
    assert client.get("/metrics").status_code == 401
    assert client.get("/metrics", HTTP_AUTHORIZATION="Bearer wrong").status_code == 401
    response = client.get("/metrics", HTTP_AUTHORIZATION="Bearer s3cret-token")
    assert response.status_code == 200 and b"quantmesh_" in response.content

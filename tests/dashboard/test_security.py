"""Who may see the dashboard and run the admin's actions, and what never appears in a page."""
import re
from decimal import Decimal

import pytest
from django.contrib.auth.models import Permission, User
from django.test import Client

from tests.dashboard.conftest import open_order
from tests.factories import make_account, make_symbol
from trading.models import Order, OrderStatus, Symbol

pytestmark = pytest.mark.django_db

DASHBOARD = "/admin/dashboard/"
PASSWORD = "correct-horse-battery-staple-42"


def staff(username: str, *perms: str) -> User:
    user = User.objects.create_user(username, password=PASSWORD, is_staff=True)
    for perm in perms:
        app, codename = perm.split(".")
        user.user_permissions.add(Permission.objects.get(content_type__app_label=app, codename=codename))
    return user


def test_anonymous_is_sent_to_the_login_page(client):
    response = client.get(DASHBOARD)
    assert response.status_code == 302
    assert response["Location"] == "/admin/login/?next=/admin/dashboard/"


def test_a_user_who_is_not_staff_is_refused(client):
    User.objects.create_user("viewer", password=PASSWORD, is_staff=False)
    client.login(username="viewer", password=PASSWORD)
    response = client.get(DASHBOARD)
    assert response.status_code == 302
    assert response["Location"].startswith("/admin/login/")
    # The login form does not let them in either.
    response = Client().post("/admin/login/", {"username": "viewer", "password": PASSWORD, "next": DASHBOARD})
    assert response.status_code == 200
    assert "_auth_user_id" not in response.wsgi_request.session


def test_staff_without_the_view_permissions_is_forbidden(client):
    client.force_login(staff("clerk"))
    assert client.get(DASHBOARD).status_code == 403
    assert DASHBOARD not in client.get("/admin/").content.decode()  # not offered a link that would refuse them
    client.force_login(staff("half", "trading.view_symbol"))
    assert client.get(DASHBOARD).status_code == 403
    client.force_login(staff("operator", "trading.view_symbol", "trading.view_order"))
    assert client.get(DASHBOARD).status_code == 200


def test_a_wrong_password_is_refused(client):
    staff("operator", "trading.view_symbol", "trading.view_order")
    response = client.post("/admin/login/?next=/admin/dashboard/",
                           {"username": "operator", "password": PASSWORD + "x", "next": DASHBOARD})
    assert response.status_code == 200
    assert "Please enter the correct username and password" in response.content.decode()
    assert "_auth_user_id" not in client.session
    assert client.get(DASHBOARD).status_code == 302
    # The right password gets in.
    response = client.post("/admin/login/", {"username": "operator", "password": PASSWORD, "next": DASHBOARD})
    assert response.status_code == 302 and response["Location"] == DASHBOARD
    assert client.get(DASHBOARD).status_code == 200


@pytest.fixture
def csrf_client(admin_user):
    client = Client(enforce_csrf_checks=True)
    client.force_login(admin_user)
    return client


def test_a_forged_action_post_is_refused(csrf_client):
    symbol = make_symbol(anchor_price=Decimal("60000"))
    order = open_order(symbol, "buy", -1, "59900", "0.001", "1")
    response = csrf_client.post("/admin/trading/order/", {"action": "cancel_selected_orders", "_selected_action": [order.pk]})
    assert response.status_code == 403
    assert Order.objects.get(pk=order.pk).status == OrderStatus.OPEN
    response = csrf_client.post("/admin/trading/symbol/", {"action": "pause_symbols", "_selected_action": [symbol.pk]})
    assert response.status_code == 403
    assert Symbol.objects.get(pk=symbol.pk).status == Symbol.Status.RUNNING
    # With the page's token the same request goes through (the check is the token, not the user).
    page = csrf_client.get("/admin/trading/symbol/")
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.content.decode()).group(1)
    response = csrf_client.post("/admin/trading/symbol/", {
        "action": "pause_symbols", "_selected_action": [symbol.pk], "csrfmiddlewaretoken": token,
    })
    assert response.status_code == 302
    assert Symbol.objects.get(pk=symbol.pk).status == Symbol.Status.PAUSED


def test_view_only_staff_cannot_cancel(client):
    symbol = make_symbol(anchor_price=Decimal("60000"))
    order = open_order(symbol, "buy", -1, "59900", "0.001", "1")
    client.force_login(staff("watcher", "trading.view_order"))
    page = client.get("/admin/trading/order/").content.decode()
    assert 'value="export_orders_csv"' in page
    assert 'value="cancel_selected_orders"' not in page
    response = client.post("/admin/trading/order/", {"action": "cancel_selected_orders", "_selected_action": [order.pk]})
    assert Order.objects.get(pk=order.pk).status == OrderStatus.OPEN
    assert response.status_code in (200, 302)
    # The ledger rows stay read-only for everyone: no add, change or delete.
    assert client.get(f"/admin/trading/order/{order.pk}/change/").status_code == 200
    assert client.post(f"/admin/trading/order/{order.pk}/change/", {"status": "canceled"}).status_code == 403
    assert client.post(f"/admin/trading/order/{order.pk}/delete/", {"post": "yes"}).status_code == 403


def test_secrets_are_never_rendered(admin_client, monkeypatch):
    key, secret = "QMKEY-9f3a61c0-visible-only-in-env", "QMSECRET-2b7e44d1-visible-only-in-env"
    monkeypatch.setenv("QM_DASHTEST_API_KEY", key)
    monkeypatch.setenv("QM_DASHTEST_API_SECRET", secret)
    account = make_account(name="live-one", paper=False, api_key_env="QM_DASHTEST_API_KEY",
                           api_secret_env="QM_DASHTEST_API_SECRET")
    assert account.credentials() == (key, secret)  # the variables really hold the secrets
    symbol = make_symbol(account, anchor_price=Decimal("60000"))
    open_order(symbol, "buy", -1, "59900", "0.001", "1")
    pages = [
        "/admin/", DASHBOARD, "/admin/trading/exchangeaccount/", f"/admin/trading/exchangeaccount/{account.pk}/change/",
        "/admin/trading/symbol/", f"/admin/trading/symbol/{symbol.pk}/change/", "/admin/trading/order/",
        f"/admin/trading/order/{Order.objects.get().pk}/change/",
    ]
    for url in pages:
        response = admin_client.get(url)
        assert response.status_code == 200, url
        html = response.content.decode()
        assert key not in html and secret not in html, url
    # The account page names the variables, not their values.
    html = admin_client.get(pages[3]).content.decode()
    assert "QM_DASHTEST_API_KEY" in html and "QM_DASHTEST_API_SECRET" in html

"""The operator's view in a real browser: log in, watch a paper bot's ladder and PnL move as the
simulator's price moves, pause the symbol from the Symbol list and cancel orders from the Order
list, all through the admin's own pages. The bot is a real `runbot` process on the test
database; the exchange is the in-process simulator."""
from __future__ import annotations

import os
import signal
from decimal import Decimal

import pytest

from tests.procs import manage, wait_for
from trading.models import Fill, GridSlot, Order, OrderStatus, Symbol

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

USERNAME, PASSWORD = "operator", "a-long-operator-password-31"
BOT = "browser-bot"


def css(driver, selector: str):
    return driver.find_elements("css selector", selector)


def attribute(driver, selector: str, name: str) -> str | None:
    """An attribute of the first match, or None; tolerant of the page reloading under us."""
    from selenium.common.exceptions import StaleElementReferenceException, WebDriverException

    try:
        found = css(driver, selector)
        return found[0].get_attribute(name) if found else None
    except (StaleElementReferenceException, WebDriverException):
        return None


def count(driver, selector: str) -> int:
    from selenium.common.exceptions import WebDriverException

    try:
        return len(css(driver, selector))
    except WebDriverException:
        return 0


@pytest.fixture
def operator(django_user_model):
    return django_user_model.objects.create_superuser(USERNAME, "ops@example.com", PASSWORD)


@pytest.fixture
def bot(paper_symbol, tmp_path):
    log = tmp_path / "runbot.log"
    proc = manage("runbot", "--symbols", paper_symbol.symbol, "--account", paper_symbol.account.name,
                  "--tick-interval", "0.05", "--status-interval", "5", log_path=log, QM_INSTANCE_ID=BOT)
    proc.log = log
    try:
        yield proc
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            assert proc.wait(timeout=30) == 0, log.read_text(errors="replace")[-3000:]


def test_operator_watches_the_grid_and_pauses_it(live_server, browser, screenshot, operator, sim, paper_symbol, bot):
    symbol = paper_symbol
    dashboard = f"{live_server.url}/admin/dashboard/"
    card = f'section[data-symbol="{symbol.symbol}"]'

    def on_page(condition, what: str, *, reload: bool = True, timeout: float = 60):
        """Poll the dashboard until `condition(driver)` holds: reloading it, or (reload=False)
        waiting for the page's own refresh."""
        def check():
            if reload:
                browser.get(dashboard + "?refresh=0")
            return condition(browser)
        return wait_for(check, timeout=timeout, what=what, proc=bot, log_path=bot.log)

    # Logging in: the dashboard sends an anonymous visitor to the login form.
    browser.get(dashboard)
    assert "/admin/login/" in browser.current_url and "next=/admin/dashboard/" in browser.current_url
    browser.find_element("id", "id_username").send_keys(USERNAME)
    browser.find_element("id", "id_password").send_keys(PASSWORD)
    screenshot(browser, "login")
    browser.find_element("css selector", 'input[type="submit"]').click()
    wait_for(lambda: browser.current_url == dashboard and count(browser, "h1") and css(browser, "h1")[0].text == "Dashboard",
             what="the dashboard after logging in", timeout=30)

    # The admin's index leads to it too.
    browser.get(f"{live_server.url}/admin/")
    screenshot(browser, "admin-index")
    browser.find_element("css selector", "a.qm-dashboard-banner").click()
    wait_for(lambda: browser.current_url == dashboard, what="the dashboard from the admin index", timeout=30)

    # The bot's first buys show up on the ladder.
    on_page(lambda d: count(d, f'{card} [data-side="buy"]') >= 2, "open buys on the ladder")
    assert attribute(browser, f"{card} .qm-pnl", "data-pnl") is not None
    assert attribute(browser, f"{card} figure.qm-pnl-chart", "data-points") == "0"
    assert attribute(browser, f'tr[data-instance="{BOT}"]', "data-alive") == "true"
    assert attribute(browser, f"{card} .qm-owner", "data-owner-kind") == "last writer"
    buys = {e.get_attribute("data-client-id") for e in css(browser, f'{card} [data-side="buy"]')}
    assert buys == set(Order.objects.filter(symbol=symbol, side="buy", status=OrderStatus.OPEN)
                       .values_list("client_order_id", flat=True))
    screenshot(browser, "ladder-open-buys")

    # The price falls through the first buy: the page refreshes itself and shows the filled slot and its sell.
    browser.get(dashboard)
    sim.engine.set_price("BTC/USDT", Decimal("59790"))
    on_page(lambda d: count(d, f"{card} [data-holding]") == 1 and count(d, f'{card} [data-side="sell"]') == 1,
            "the filled slot and its sell, by the page's own refresh", reload=False)
    assert attribute(browser, f"{card} tr[data-level='-1'] [data-holding]", "data-holding") is not None
    assert attribute(browser, f"{card} [data-held-slots]", "data-held-slots") == "1"
    assert attribute(browser, f"{card} figure.qm-pnl-chart", "data-points") == "1"
    screenshot(browser, "buy-filled")

    # The price rises through the sell: the round trip's profit appears in the PnL headline and chart.
    sim.engine.set_price("BTC/USDT", Decimal("60010"))
    # The page reads its panels one query at a time while the bot writes, so one render can show
    # the sell's profit before the chart has its fill; wait for a render that has both.
    on_page(lambda d: Decimal(attribute(d, f"{card} .qm-pnl", "data-pnl") or "0") > 0
            and count(d, f'{card} [data-side="sell"]') == 0
            and int(attribute(d, f"{card} figure.qm-pnl-chart", "data-points") or 0) >= 2,
            "a positive realised PnL and both fills on the chart after the sell")
    realised = sum((s.realized_pnl for s in GridSlot.objects.filter(symbol=symbol)), Decimal(0))
    assert Decimal(attribute(browser, f"{card} .qm-pnl", "data-pnl")) == realised > 0
    assert int(attribute(browser, f"{card} figure.qm-pnl-chart", "data-points")) == Fill.objects.filter(symbol=symbol).count() >= 2
    assert count(browser, f"{card} svg polyline") == 1
    assert attribute(browser, f"{card} [data-held-slots]", "data-held-slots") == "0"  # at most dust is left
    screenshot(browser, "sell-filled-pnl")

    # Pause the symbol from the Symbol list's actions menu.
    from selenium.webdriver.support.ui import Select

    browser.get(f"{live_server.url}/admin/trading/symbol/")
    browser.find_element("css selector", f'input.action-select[value="{symbol.pk}"]').click()
    Select(browser.find_element("name", "action")).select_by_value("pause_symbols")
    screenshot(browser, "pause-action-chosen")
    browser.find_element("css selector", 'button[name="index"]').click()
    wait_for(lambda: any("Paused 1 symbol" in e.text for e in css(browser, ".messagelist li.success")),
             what="the pause confirmation", timeout=30)
    symbol.refresh_from_db()
    assert symbol.status == Symbol.Status.PAUSED
    assert symbol.pause_reason == f"paused from the admin by {USERNAME}"
    screenshot(browser, "symbol-paused")

    on_page(lambda d: attribute(d, card, "data-status") == "paused", "the paused status on the dashboard")
    assert f"Reason: paused from the admin by {USERNAME}" in css(browser, f"{card} .qm-pause-reason")[0].text
    screenshot(browser, "dashboard-paused")

    # While paused the bot places nothing new; cancel its open buys from the Order list.
    open_buys = list(Order.objects.filter(symbol=symbol, side="buy", status=OrderStatus.OPEN))
    assert open_buys
    browser.get(f"{live_server.url}/admin/trading/order/?status__exact=open")
    for order in open_buys:
        browser.find_element("css selector", f'input.action-select[value="{order.pk}"]').click()
    Select(browser.find_element("name", "action")).select_by_value("cancel_selected_orders")
    browser.find_element("css selector", 'button[name="index"]').click()
    wait_for(lambda: any(f"Canceled {len(open_buys)} order(s)" in e.text for e in css(browser, ".messagelist li.success")),
             what="the cancel confirmation", timeout=30)
    screenshot(browser, "orders-canceled")
    remote = {o["clientOrderId"]: o["status"] for o in sim.engine.ledger("BTC/USDT")}
    for order in open_buys:
        order.refresh_from_db()
        assert order.status == OrderStatus.CANCELED
        assert remote[order.client_order_id] == "CANCELED"
    on_page(lambda d: count(d, f'{card} [data-side="buy"]') == 0, "an empty ladder after the cancel")
    screenshot(browser, "dashboard-after-cancel")

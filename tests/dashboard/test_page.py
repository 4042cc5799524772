"""What the dashboard page shows, and that it is linked from the admin."""
import re
import xml.etree.ElementTree as ET
from datetime import timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

from locking.models import LockEvent
from reconciliation.models import ReconcileRun
from tests.dashboard.conftest import open_order, trade
from tests.factories import make_symbol
from trading import services
from trading.models import BotInstance, Symbol

pytestmark = pytest.mark.django_db

DASHBOARD = "/admin/dashboard/"


def instance(instance_id: str, *, age: int, stopped: bool = False) -> BotInstance:
    now = timezone.now()
    return BotInstance.objects.create(
        instance_id=instance_id, host="box", pid=4242, version="1", lock_backend="redis",
        last_heartbeat=now - timedelta(seconds=age), stopped_at=now if stopped else None,
    )


@pytest.fixture
def world(symbol):
    buy = open_order(symbol, "buy", -1, "59800", "0.00083", "1", writer=services.Writer("bot-a", 0))
    open_order(symbol, "buy", -2, "59600", "0.00084", "2", writer=services.Writer("bot-a", 0))
    trade(symbol, buy, "t1", "59800", "0.00083", "0.049634", "USDT", minutes=1)
    sell = open_order(symbol, "sell", -1, "60000", "0.00083", "3", writer=services.Writer("bot-a", 0))
    trade(symbol, sell, "t2", "60000", "0.00083", "0.0498", "USDT", minutes=2)
    other = make_symbol(symbol.account, symbol="ETH/USDT", anchor_price=None)
    services.symbol_pause(other, reason="stop loss: <b>unrealised</b> loss 0.2")
    Symbol.objects.filter(pk=other.pk).update(owner_instance="bot-b", owner_token=12)
    instance("bot-a", age=2)
    instance("bot-b", age=600)
    instance("bot-c", age=900, stopped=True)
    LockEvent.objects.create(kind="conflict", key="order:binance:BTC/USDT:level:-3", label="order:binance:BTC/USDT",
                             instance_id="bot-b", count=4)
    ReconcileRun.objects.create(symbol=symbol, instance_id="bot-a", trigger="loop", status="attention", discrepancies=2,
                                unresolved=1, finished_at=timezone.now())
    return symbol, other


def sections(html: str) -> dict[str, str]:
    return dict(re.findall(r'<section class="module qm-symbol" id="symbol-\d+" data-symbol="([^"]+)".*?>(.*?)</section>', html, re.S))


def test_the_dashboard_shows_each_symbol(admin_client, world):
    symbol, other = world
    response = admin_client.get(DASHBOARD)
    assert response.status_code == 200
    html = response.content.decode()
    assert '<meta http-equiv="refresh" content="5">' in html
    cards = sections(html)
    assert set(cards) == {"BTC/USDT", "ETH/USDT"}
    btc, eth = cards["BTC/USDT"], cards["ETH/USDT"]

    # The ladder: the open buy at -2 with price, amount and client id; the last seen price is the sell's fill.
    assert re.search(r'data-side="buy" data-client-id="qm-\d+-bm2-0"[^>]*>0.00084 @ 59600 <code>qm-\d+-bm2-0</code>', btc)
    assert 'data-side="sell"' not in btc  # the sell filled
    assert 'data-price="60000' in btc and "latest fill" in btc
    assert "qm-marker" in btc and 'class="qm-nearest' in btc
    # Realised PnL: 49.8 - 49.634 - 0.049634 - 0.0498, with a chart of both fills.
    assert 'data-pnl="0.066566' in btc and "0.066566 USDT" in btc
    svg = re.search(r"<svg .*?</svg>", btc, re.S).group(0)
    assert ET.fromstring(svg).get("data-points") == "2"
    assert re.search(r'class="qm-owner" data-owner-kind="last writer">bot-a<', btc)
    assert "needs attention" in btc and "1 needs a person" in btc

    assert 'data-status="paused"' in html and "qm-status-paused" in eth
    assert "stop loss: &lt;b&gt;unrealised&lt;/b&gt; loss 0.2" in eth  # escaped, not markup
    assert "No ladder yet" in eth and "no fills yet" in eth
    assert re.search(r'data-owner-kind="lease owner">bot-b<', eth) and "token 12" in eth

    assert re.search(r'data-instance="bot-a" data-alive="true"', html)
    assert re.search(r'data-instance="bot-b" data-alive="false".*?qm-dead', html, re.S)
    assert re.search(r'data-instance="bot-c" data-alive="false".*?qm-stopped', html, re.S)
    assert re.search(r'data-lock-kind="conflict".*?order:binance:BTC/USDT.*?bot-b.*?>4<', html, re.S)


def test_every_link_on_the_page_opens(admin_client, world):
    html = admin_client.get(DASHBOARD).content.decode()
    links = set(re.findall(r'href="(/admin/[^"]*)"', html))
    assert len(links) > 10
    for link in links:
        response = admin_client.get(link.replace("&amp;", "&"))
        # An admin filter it does not allow would redirect to "?e=1".
        assert response.status_code == 200, link


def test_refresh_can_be_turned_off(admin_client, world):
    html = admin_client.get(DASHBOARD + "?refresh=0").content.decode()
    assert 'http-equiv="refresh"' not in html and "Not refreshing" in html


def test_an_empty_installation(admin_client):
    html = admin_client.get(DASHBOARD).content.decode()
    assert "No symbols yet" in html and "No bot has run yet" in html and "No lock conflicts recorded" in html


def test_the_admin_links_to_the_dashboard(admin_client):
    html = admin_client.get("/admin/").content.decode()
    assert 'class="qm-dashboard-banner" href="/admin/dashboard/"' in html
    html = admin_client.get("/admin/trading/order/").content.decode()
    assert '<a href="/admin/dashboard/">Dashboard</a>' in html  # in the header of every admin page


def test_the_pnl_headline_is_the_ledger_sum(admin_client, world):
    symbol, _ = world
    total = sum(services.GridSlot.objects.filter(symbol=symbol).values_list("realized_pnl", flat=True), Decimal(0))
    assert total == Decimal("0.066566")
    assert f'data-pnl="{total}"' in admin_client.get(DASHBOARD).content.decode()


def test_a_futures_symbol_shows_its_position_liquidation_margin_and_funding(admin_client):
    from tests.factories import make_account
    from trading.exchange.types import FuturesAccount, FuturesPosition
    from trading.models import MarketType

    futures = make_symbol(make_account(name="usdm", market_type=MarketType.USDM), symbol="BTC/USDT")
    spot = make_symbol(make_account(name="spot"), symbol="ETH/USDT")
    position = FuturesPosition("BTC/USDT", Decimal("0.1"), Decimal("50000"), Decimal("48000"), Decimal("-200"),
                               Decimal("45000"), "cross", 10)
    account = FuturesAccount("USDT", Decimal("1000"), Decimal("800"), Decimal("300"), Decimal("480"),
                             Decimal("20"), Decimal("-200"))
    services.position_snapshot_record(futures, position, account)
    services.funding_record(symbol=futures, tran_id="1", amount=Decimal("-1.25"), asset="USDT",
                            funded_at=timezone.now())
    html = admin_client.get(DASHBOARD).content.decode()
    assert html.count('data-futures="true"') == 1  # the spot symbol shows none of it
    assert 'data-position="0.1' in html and 'data-liquidation="45000' in html
    assert "6.25 % below the mark" in html  # (48000 - 45000) / 48000
    assert 'class="qm-down">45000' in html  # inside the 10 % buffer
    assert 'data-margin-ratio="0.025' in html and "2.50 %" in html  # 20 / (1000 - 200)
    assert 'data-funding="-1.25' in html and "1 payment;" in html
    assert spot.symbol in html

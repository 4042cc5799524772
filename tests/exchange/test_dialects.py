"""Exchange dialects: Binance spot over real ccxt against the simulator (client order ids, the
pinned request timestamp, native statuses), and the refusal of an exchange without a dialect,
before anything is sent."""
from __future__ import annotations

import time
from decimal import Decimal

import ccxt
import pytest

from tests.exchange.conftest import gateway
from trading.exchange import ExchangeGateway, build_exchange
from trading.exchange import errors as xerr
from trading.exchange.dialects import (
    BINANCE_SPOT,
    CLIENT_ID_LOOKUP,
    PINNED_TIMESTAMP,
    REQUIRED,
    GenericDialect,
    dialect_for,
)
from trading.exchange.session import ExchangeSession, session_for
from trading.models import ExchangeAccount

D = Decimal


def place(gw, cid, **kwargs):
    return gw.create_limit_order(symbol="BTC/USDT", side="buy", amount=D("0.001"), price=D("59000"),
                                 client_order_id=cid, post_only=True, **kwargs)


def test_binance_is_served_by_its_spot_dialect():
    assert dialect_for("binance") is BINANCE_SPOT
    assert BINANCE_SPOT.missing() == []
    exchange = build_exchange("binance", recv_window_ms=1234)
    assert exchange.options["recvWindow"] == 1234 and exchange.options["defaultType"] == "spot"
    assert ExchangeGateway(exchange).recv_window_ms == 1234
    assert ExchangeGateway(build_exchange("binance")).recv_window_ms == BINANCE_SPOT.default_recv_window_ms


@pytest.mark.parametrize("exchange_id", ["kraken", "okx", "binanceus", "bybit"])
def test_an_exchange_without_a_dialect_is_refused_naming_what_it_cannot_honour(exchange_id):
    assert GenericDialect(exchange_id).missing() == list(REQUIRED)
    with pytest.raises(xerr.UnsupportedExchange) as refused:
        build_exchange(exchange_id, api_key="k", secret="s")
    message = str(refused.value)
    assert repr(exchange_id) in message
    for capability in REQUIRED:
        assert capability in message
    with pytest.raises(xerr.UnsupportedExchange, match=exchange_id):
        ExchangeGateway(getattr(ccxt, exchange_id)({"apiKey": "k", "secret": "s"}))


def test_an_unknown_exchange_id_is_still_rejected_as_such():
    with pytest.raises(xerr.Rejected, match="not a ccxt exchange id"):
        build_exchange("no-such-exchange")


def test_the_generic_dialect_refuses_each_capability_it_lacks():
    generic = GenericDialect("kraken")
    with pytest.raises(xerr.UnsupportedExchange, match=CLIENT_ID_LOOKUP):
        generic.client_id_params("qm-1")
    with pytest.raises(xerr.UnsupportedExchange, match=PINNED_TIMESTAMP):
        with generic.signed_at(object(), 1):
            pass


@pytest.mark.django_db(transaction=True)
def test_a_session_for_an_exchange_without_a_dialect_is_refused_before_any_request(sim):
    account = ExchangeAccount.objects.create(name="paper-kraken", exchange_id="kraken", paper=True,
                                             base_url=sim.base_url)
    with pytest.raises(xerr.UnsupportedExchange, match="kraken"):
        session_for(account)
    with pytest.raises(xerr.UnsupportedExchange, match="kraken"):
        ExchangeSession(account)
    assert sim.request_counts == {}


def test_a_late_order_request_is_refused_by_its_pinned_timestamp(sim):
    gw = gateway(sim)
    gw.load_markets()
    late = int(time.time() * 1000) - gw.recv_window_ms - 1000
    with pytest.raises(xerr.Rejected):
        place(gw, "qm-1-bm1-0", signed_at_ms=late)
    assert sim.engine.ledger() == []  # refused for its timestamp: it never executed
    assert "nonce" not in vars(gw.exchange)  # the pin lasts one request
    order = place(gw, "qm-1-bm1-0", signed_at_ms=int(time.time() * 1000))
    assert order.client_order_id == "qm-1-bm1-0" and order.status == "open"
    assert [o["clientOrderId"] for o in sim.engine.ledger()] == ["qm-1-bm1-0"]


def test_orders_are_named_by_client_id_and_read_in_binance_statuses(sim):
    gw = gateway(sim)
    order = place(gw, "qm-1-bm1-0")
    canceled = gw.cancel_order("BTC/USDT", client_order_id="qm-1-bm1-0")
    # The cancel reply's clientOrderId is the cancel request's; the order's own id is kept.
    assert (canceled.exchange_order_id, canceled.client_order_id, canceled.status) == \
        (order.exchange_order_id, "qm-1-bm1-0", "canceled")
    assert gw.cancel_order("BTC/USDT", client_order_id="qm-1-bm1-0") is None
    assert gw.fetch_order_by_client_id("BTC/USDT", "qm-1-bm1-0").status == "canceled"

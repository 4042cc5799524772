"""The ledger's safety rules, enforced by the database on every engine the suite runs on."""
from decimal import Decimal

import pytest
from django.core.exceptions import ValidationError
from django.db import IntegrityError, connection, transaction

from tests.factories import make_account, make_symbol
from trading import services
from trading.errors import FencedWrite, IllegalTransition
from trading.models import Fill, Order, OrderEvent, OrderStatus, Symbol

pytestmark = pytest.mark.django_db(transaction=True)

WRITER = services.Writer(instance_id="test-a", fence_token=0)


def place(symbol, *, level=-1, side="buy", seq=0, writer=WRITER):
    return services.order_create_intent(
        symbol=symbol, writer=writer, side=side, level=level, price=Decimal("59900"),
        amount=Decimal("0.0005"), seq=seq,
    )


def test_second_live_order_for_the_same_slot_is_refused_by_the_database():
    symbol = make_symbol()
    first = place(symbol, seq=0)
    with pytest.raises(IntegrityError):
        place(symbol, seq=1)  # same slot, different intent: the unique active_slot refuses it
    assert Order.objects.count() == 1
    assert first.active_slot == f"{symbol.pk}:-1:buy"


def test_a_raw_insert_bypassing_services_is_refused_too():
    symbol = make_symbol()
    place(symbol)
    with pytest.raises(IntegrityError), transaction.atomic():
        Order.objects.create(
            symbol=symbol, client_order_id="qm-raw-1", active_slot=f"{symbol.pk}:-1:buy", side="buy", level=-1,
            price=Decimal("1"), amount=Decimal("1"), instance_id="x",
        )


def test_a_finished_order_does_not_block_a_new_one_for_the_slot():
    symbol = make_symbol()
    first = place(symbol, seq=0)
    services.order_transition(first, OrderStatus.OPEN, writer=WRITER, exchange_order_id="1")
    services.order_transition(first, OrderStatus.FILLED, writer=WRITER, filled_amount=first.amount)
    first.refresh_from_db()
    assert first.active_slot is None and first.closed_at is not None
    second = place(symbol, seq=1)
    assert second.active_slot == first_slot(symbol) and second.client_order_id != first.client_order_id


def first_slot(symbol):
    return f"{symbol.pk}:-1:buy"


def test_buy_and_sell_of_one_slot_are_separate_slots():
    symbol = make_symbol()
    place(symbol, side="buy")
    sell = place(symbol, side="sell")
    assert sell.active_slot == f"{symbol.pk}:-1:sell"


def test_duplicate_client_order_id_is_refused():
    symbol = make_symbol()
    first = place(symbol, seq=3)
    services.order_transition(first, OrderStatus.REJECTED, writer=WRITER, last_error="test")
    with pytest.raises(IntegrityError):
        place(symbol, seq=3)  # the same intent again: same deterministic id
    assert Order.objects.filter(symbol=symbol).count() == 1


def test_client_order_ids_are_deterministic_and_exchange_safe():
    a = services.client_order_id(prefix="qm", symbol_id=7, level=-12, side="buy", seq=4)
    b = services.client_order_id(prefix="qm", symbol_id=7, level=-12, side="buy", seq=4)
    assert a == b == "qm-7-bm12-4"
    assert services.client_order_id(prefix="qm", symbol_id=7, level=12, side="sell", seq=0) == "qm-7-s12-0"


def test_illegal_transition_is_refused_with_a_clear_error_and_no_change():
    symbol = make_symbol()
    order = place(symbol)
    services.order_transition(order, OrderStatus.OPEN, writer=WRITER, exchange_order_id="42")
    services.order_transition(order, OrderStatus.CANCELED, writer=WRITER)
    events_before = OrderEvent.objects.filter(order=order).count()
    with pytest.raises(IllegalTransition, match=r"cannot go from canceled to open \(it is final\)"):
        services.order_transition(order, OrderStatus.OPEN, writer=WRITER, exchange_order_id="43")
    order.refresh_from_db()
    assert order.status == OrderStatus.CANCELED and order.exchange_order_id == "42"
    assert OrderEvent.objects.filter(order=order).count() == events_before


def test_every_transition_is_audited():
    symbol = make_symbol()
    order = place(symbol)
    services.order_transition(order, OrderStatus.UNKNOWN, writer=WRITER, note="timeout")
    services.order_transition(order, OrderStatus.OPEN, writer=WRITER, exchange_order_id="9", note="found by client id")
    trail = list(OrderEvent.objects.filter(order=order).order_by("id").values_list("from_status", "to_status"))
    assert trail == [("", "pending"), ("pending", "unknown"), ("unknown", "open")]


def test_eighteen_decimal_places_seq_exactly():
    symbol = make_symbol()
    tiny = Decimal("0.000000000000000001")
    big = Decimal("123456789012345678.123456789012345678")
    order = services.order_create_intent(
        symbol=symbol, writer=WRITER, side="buy", level=0, price=big, amount=tiny
    )
    order = Order.objects.get(pk=order.pk)
    assert order.price == big and str(order.price) == "123456789012345678.123456789012345678"
    assert order.amount == tiny and order.amount.as_tuple().exponent == -18
    fill = Fill.objects.create(
        account=symbol.account, symbol=symbol, order=order, exchange_trade_id="t1", side="buy",
        price=Decimal("0.100000000000000001"), amount=Decimal("7.777777777777777777"),
        traded_at=order.created_at,
    )
    fill = Fill.objects.get(pk=fill.pk)
    assert fill.price == Decimal("0.100000000000000001")
    assert fill.amount * 9 == Decimal("69.999999999999999993")


def test_fill_is_unique_per_account_and_trade_id():
    symbol = make_symbol()
    kwargs = dict(account=symbol.account, symbol=symbol, exchange_trade_id="T-1", side="buy",
                  price=Decimal("1"), amount=Decimal("1"), traded_at=symbol.created_at)
    Fill.objects.create(**kwargs)
    with pytest.raises(IntegrityError), transaction.atomic():
        Fill.objects.create(**kwargs)
    other = make_account(name="other")
    other_symbol = make_symbol(account=other)
    Fill.objects.create(**{**kwargs, "account": other, "symbol": other_symbol})  # another account: allowed
    assert Fill.objects.count() == 2


@pytest.mark.parametrize(
    "field, value",
    [
        ("price_interval", Decimal("-1")),
        ("price_interval", Decimal("0")),
        ("order_quantity", Decimal("0")),
        ("min_order_value", Decimal("-0.5")),
        ("buy_window_size", 0),
        ("sell_window_size", 0),
        ("reconcile_interval", 0),
        ("order_cleanup_threshold", 0),
        ("cleanup_batch_size", 0),
        ("stop_loss_ratio", Decimal("1.5")),
    ],
)
def test_bad_grid_parameters_are_refused_by_the_database(field, value):
    symbol = make_symbol()
    with pytest.raises(IntegrityError), transaction.atomic():
        Symbol.objects.filter(pk=symbol.pk).update(**{field: value})
    symbol.refresh_from_db()
    assert getattr(symbol, field) != value


@pytest.mark.parametrize(
    "field, value",
    [
        ("price_interval", Decimal("-1")),
        ("order_quantity", Decimal("0")),
        ("buy_window_size", 0),
        ("sell_window_size", 0),
        ("symbol", "btc-usdt"),
    ],
)
def test_bad_grid_parameters_are_refused_by_model_validation_naming_the_field(field, value):
    symbol = make_symbol()
    setattr(symbol, field, value)
    with pytest.raises(ValidationError) as excinfo:
        symbol.full_clean()
    assert field in excinfo.value.message_dict


def test_validation_names_constraint_without_field_validator():
    symbol = make_symbol()
    symbol.stop_loss_ratio = Decimal("2")
    with pytest.raises(ValidationError, match="stop_loss_ratio must be below 1"):
        symbol.full_clean()


def test_unknown_exchange_id_is_refused_naming_the_field():
    account = make_account()
    account.exchange_id = "notanexchange"
    with pytest.raises(ValidationError) as excinfo:
        account.full_clean()
    assert "exchange_id" in excinfo.value.message_dict


def test_stale_fencing_token_cannot_write():
    symbol = make_symbol()
    new_owner = services.Writer(instance_id="b", fence_token=8)
    place(symbol, writer=new_owner)
    stale = services.Writer(instance_id="a", fence_token=7)
    with pytest.raises(FencedWrite, match="token 7 of a is older than"):
        place(symbol, level=-2, writer=stale)
    assert Order.objects.filter(level=-2).count() == 0
    symbol.refresh_from_db()
    assert symbol.fence_token == 8


def test_a_final_order_cannot_hold_a_slot_even_by_raw_update():
    symbol = make_symbol()
    order = place(symbol)
    with pytest.raises(IntegrityError), transaction.atomic():
        Order.objects.filter(pk=order.pk).update(status=OrderStatus.FILLED)


def test_filled_amount_cannot_exceed_amount():
    symbol = make_symbol()
    order = place(symbol)
    with pytest.raises(IntegrityError), transaction.atomic():
        Order.objects.filter(pk=order.pk).update(filled_amount=order.amount * 2)


def test_suite_runs_on_the_configured_engine():
    # Recorded in the output so a CI log shows which engine each pass used.
    assert connection.vendor in {"sqlite", "postgresql", "mysql"}

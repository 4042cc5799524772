"""USDⓈ-M margin arithmetic against Binance's published examples, exact in Decimal."""
from decimal import Decimal as D
from decimal import localcontext

import pytest

from trading import margin
from trading.margin import Bracket, Position

# BTCUSDT's first three brackets as the exchange serves them (notionalFloor, notionalCap, mmr, leverage).
BTC_TIERS = margin.brackets([
    (D("0"), D("50000"), D("0.004"), 125),
    (D("50000"), D("600000"), D("0.005"), 100),
    (D("600000"), D("3000000"), D("0.0065"), 75),
])
CENT = D("0.01")


def one(mmr: str, cum: str) -> tuple[Bracket, ...]:
    """A single bracket with the maintenance amount the example states."""
    return (Bracket(D(0), D("1e30"), D(mmr), D(cum), 125),)


def test_maintenance_amounts_follow_from_floors_and_rates():
    assert [b.cum for b in BTC_TIERS] == [D("0"), D("50.000"), D("950.0000")]
    assert margin.maintenance_margin(D("100000"), BTC_TIERS) == D("450.000")
    assert margin.maintenance_margin(D("-100000"), BTC_TIERS) == D("450.000")  # a short's notional counts the same
    assert margin.maintenance_margin(D("0"), BTC_TIERS) == 0
    assert margin.bracket_for(D("49999.99"), BTC_TIERS).mmr == D("0.004")
    assert margin.bracket_for(D("50000"), BTC_TIERS).mmr == D("0.005")


def test_brackets_refuse_gaps_and_bad_rates():
    with pytest.raises(ValueError, match="follow the previous cap"):
        margin.brackets([(D("0"), D("10"), D("0.01"), 20), (D("20"), D("30"), D("0.02"), 10)])
    with pytest.raises(ValueError, match="between 0 and 1"):
        margin.brackets([(D("0"), D("10"), D("1.5"), 20)])


# Binance's liquidation-price calculator example (wallet 1535443.01, ETHUSDT and BTCUSDT longs).
WALLET = D("1535443.01")
ETH = dict(qty=D("3683.979"), entry=D("1456.84"), tiers=one("0.10", "135365"))
BTC = dict(qty=D("109.488"), entry=D("32481.98"), tiers=one("0.025", "16300"))


@pytest.mark.parametrize("position, others, expected", [
    pytest.param(ETH, None, D("1114.78"), id="ETHUSDT-isolated"),
    pytest.param(BTC, None, D("18778.73"), id="BTCUSDT-isolated"),
    pytest.param(ETH, (BTC, D("31967.27")), D("1153.26"), id="ETHUSDT-cross"),
    pytest.param(BTC, (ETH, D("1335.18")), D("26316.89"), id="BTCUSDT-cross"),
    pytest.param(dict(qty=D("0.1"), entry=D("50000"), tiers=BTC_TIERS), None, D("40160.64"), id="grid-sized"),
])
def test_liquidation_price_matches_binance_examples(position, others, expected):
    tmm = upnl = D(0)
    wallet = WALLET if position["tiers"] is not BTC_TIERS else D("1000")
    if others is not None:
        other, mark = others
        tmm, upnl = margin.cross_terms([(other["qty"], other["entry"], mark, other["tiers"])])
    price = margin.liquidation_price(wallet=wallet, others_maintenance=tmm, others_unrealized=upnl, **position)
    assert price.quantize(CENT) == expected
    # At that mark the margin balance equals the maintenance margin, to the last digit computed.
    with localcontext() as ctx:
        ctx.prec = margin.PRECISION
        balance = wallet - tmm + upnl + margin.unrealized_pnl(position["qty"], position["entry"], price)
        assert abs(balance - margin.maintenance_margin(position["qty"] * price, position["tiers"])) < D("1e-40")


def test_liquidation_price_uses_the_bracket_of_the_notional_at_that_price():
    # Long 2 BTC at 50000 on a 10000 wallet: bracket 1 would put LP at 45180.72, whose notional
    # (90361) lies in bracket 2; with bracket 2's rate and amount LP is 45201.01.
    price = margin.liquidation_price(wallet=D("10000"), qty=D("2"), entry=D("50000"), tiers=BTC_TIERS)
    assert price.quantize(CENT) == D("45201.01")
    assert margin.bracket_for(2 * price, BTC_TIERS).mmr == D("0.005")


def test_no_liquidation_price_when_flat_or_fully_covered():
    assert margin.liquidation_price(wallet=D("1000"), qty=D("0"), entry=D("0"), tiers=BTC_TIERS) is None
    # 0.01 BTC long on 10000 USDT: the wallet covers a fall to zero.
    assert margin.liquidation_price(wallet=D("10000"), qty=D("0.01"), entry=D("50000"), tiers=BTC_TIERS) is None


def test_short_liquidates_above_its_entry():
    price = margin.liquidation_price(wallet=D("1000"), qty=D("-0.1"), entry=D("50000"), tiers=BTC_TIERS)
    # (1000 + 0 + 0.1 x 50000) / (0.1 x 0.004 + 0.1)
    assert price.quantize(CENT) == D("59760.96")


def test_fills_net_into_one_position():
    pos, realized = margin.apply_fill(Position(), side="buy", qty=D("0.010"), price=D("50000"))
    assert (pos, realized) == (Position(D("0.010"), D("50000")), 0)
    pos, realized = margin.apply_fill(pos, side="buy", qty=D("0.030"), price=D("49000"))
    assert (pos.qty, pos.entry, realized) == (D("0.040"), D("49250"), 0)  # re-averaged
    pos, realized = margin.apply_fill(pos, side="sell", qty=D("0.010"), price=D("49500"))
    assert (pos.qty, pos.entry, realized) == (D("0.030"), D("49250"), D("2.500"))  # entry kept
    pos, realized = margin.apply_fill(pos, side="sell", qty=D("0.050"), price=D("49000"))
    assert (pos.qty, pos.entry, realized) == (D("-0.020"), D("49000"), D("-7.500"))  # crossed zero
    pos, realized = margin.apply_fill(pos, side="buy", qty=D("0.020"), price=D("48000"))
    assert (pos, realized) == (Position(), D("20.000"))  # a short gains as the price falls


def test_fill_input_is_checked():
    with pytest.raises(ValueError, match="positive"):
        margin.apply_fill(Position(), side="buy", qty=D("0"), price=D("1"))
    with pytest.raises(ValueError, match="buy or sell"):
        margin.apply_fill(Position(), side="BUY", qty=D("1"), price=D("1"))


def test_margin_and_funding():
    assert margin.initial_margin(D("5000"), 20) == D("250")
    assert margin.initial_margin(D("100"), 3).quantize(D("1e-8")) == D("33.33333333")
    assert margin.unrealized_pnl(D("0.1"), D("50000"), D("49000")) == D("-100.0")
    assert margin.funding_income(D("0.1"), D("50000"), D("0.0001")) == D("-0.50000")  # a long pays
    assert margin.funding_income(D("-0.1"), D("50000"), D("0.0001")) == D("0.50000")  # a short receives
    assert margin.funding_income(D("0.1"), D("50000"), D("-0.0001")) == D("0.50000")

"""Reconcile time as the number of open orders grows (100, 1,000, 10,000): total, the part spent
in exchange calls, and the rest (ledger work), which should grow linearly.

    python -m bench.bench_reconcile [--sizes 100,1000,10000]
"""
from __future__ import annotations

import argparse
import time
import uuid
from collections import defaultdict
from decimal import Decimal

from bench.common import setup_django, write_json


def one(size: int) -> dict:
    from locking.nop import NopLock
    from reconciliation.models import ReconcileRun
    from reconciliation.services import Reconciler
    from trading.exchange import gateway as gateway_module
    from trading.exchange.accounts import gateway_for
    from trading.models import ExchangeAccount, Order, Symbol
    from trading.simulator import MarketSpec, SimConfig, SimulatorServer

    config = SimConfig(markets=[MarketSpec("BTC/USDT", price=Decimal("60000"), tick=Decimal("0.01"), step=Decimal("0.00001"))],
                       balances={"USDT": Decimal("100000000000")}, weight_limit=10**9)  # limit off: 10,000 orders in one pass
    with SimulatorServer(config) as sim:
        account = ExchangeAccount.objects.create(name=f"rec-{size}-{uuid.uuid4().hex[:6]}", exchange_id="binance", paper=True,
                                                 base_url=sim.base_url)
        symbol = Symbol.objects.create(account=account, symbol="BTC/USDT", price_interval=Decimal("1"),
                                       order_quantity=Decimal("10"), position_safety_check=0, step_size=Decimal("0.00001"))
        rows = []
        for i in range(size):
            level = -(i + 1)
            cid = f"qm-{symbol.pk}-bm{i + 1}-0"
            price = Decimal("50000") - Decimal(i) / 100
            order, _ = sim.engine.place_order("BTC/USDT", "BUY", "LIMIT", Decimal("0.0002"), price, cid)
            rows.append(Order(symbol=symbol, client_order_id=cid, active_slot=f"{symbol.pk}:{level}:buy", side="buy",
                              level=level, price=price, amount=Decimal("0.0002"), status="open",
                              exchange_order_id=str(order.order_id), instance_id="bench"))
        Order.objects.bulk_create(rows, batch_size=1000)
        spent: defaultdict[str, float] = defaultdict(float)
        gateway_module.set_request_observer(lambda ex, method, seconds, error: spent.__setitem__(method, spent[method] + seconds))
        try:
            symbol.refresh_from_db()
            reconciler = Reconciler(symbol, gateway_for(account), NopLock(), instance_id="bench",
                                    trigger=ReconcileRun.Trigger.CRON)
            reconciler.run()  # first pass records the base offset
            spent.clear()
            started = time.perf_counter()
            outcome = reconciler.run()
            total = time.perf_counter() - started
        finally:
            gateway_module.set_request_observer(None)
    exchange = sum(spent.values())
    return {"open_orders": size, "status": outcome.status, "total_s": round(total, 4), "exchange_calls_s": round(exchange, 4),
            "ledger_s": round(total - exchange, 4), "ledger_us_per_order": round((total - exchange) / size * 1e6, 1),
            "exchange_by_method_s": {k: round(v, 4) for k, v in spent.items()}}


def run(sizes=(100, 1000, 10000)) -> dict:
    setup_django()
    rows = [one(n) for n in sizes]
    base = rows[0]["ledger_us_per_order"]
    for row in rows:
        row["per_order_vs_smallest"] = round(row["ledger_us_per_order"] / base, 3)
    return {"sizes": rows}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="100,1000,10000")
    args = parser.parse_args()
    results = run(tuple(int(x) for x in args.sizes.split(",")))
    print(f"{'open orders':>12} {'total s':>9} {'exchange s':>11} {'ledger s':>9} {'ledger us/order':>16}")
    for row in results["sizes"]:
        print(f"{row['open_orders']:>12} {row['total_s']:>9} {row['exchange_calls_s']:>11} {row['ledger_s']:>9} "
              f"{row['ledger_us_per_order']:>16}")
    print("wrote", write_json("reconcile", results))


if __name__ == "__main__":
    main()

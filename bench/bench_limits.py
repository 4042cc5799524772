"""Request weight and fill-to-sell latency at Binance's default limits (6,000 weight a minute,
100 orders per 10 s), polling by REST against streams, side by side in one run.

For each mode, one bot (its real symbol threads and account session, SQLite, NopLock) trades N
symbols against the simulator: first with the prices standing still (idle), then moving 0.1 % a
second on average (trading). Reported: request weight per symbol-minute in each phase (the
simulator's own count, scaled from the phase's length to a minute), how many symbols one instance
fits within 6,000 a minute at that rate, the 429s, -1015s and 418s the simulator answered, and the
time from a buy's fill at the exchange to its sell's arrival there (p50, p99).

    python -m bench.bench_limits [--symbols 10] [--seconds 60]
"""
from __future__ import annotations

import argparse
import statistics
import threading
import time
from decimal import Decimal

from bench.common import setup_django, write_json

INTERVAL = Decimal("0.2")


def run_mode(streams: bool, n: int, seconds: float) -> dict:
    from locking.nop import NopLock
    from trading.models import ExchangeAccount, Symbol
    from trading.runner import Bot, BotOptions
    from trading.simulator import SimConfig, SimulatorServer, market_for

    config = SimConfig(markets=[market_for(f"C{i}/USDT", price="100") for i in range(n)],
                       balances={"USDT": Decimal("100000000")}, tick_seconds=1.0, seed=7)  # Binance's limits
    with SimulatorServer(config, streams=True) as sim:
        sim.ticking.clear()
        account = ExchangeAccount.objects.create(name=f"limits-{'ws' if streams else 'rest'}-{time.monotonic_ns()}",
                                                 exchange_id="binance", paper=True, base_url=sim.base_url)
        symbols = [Symbol.objects.create(account=account, symbol=f"C{i}/USDT", price_interval=INTERVAL,
                                         order_quantity=Decimal("20"), min_order_value=Decimal("5"), buy_window_size=5,
                                         sell_window_size=5, position_safety_check=0) for i in range(n)]
        symbols = list(Symbol.objects.select_related("account").filter(pk__in=[s.pk for s in symbols]))
        bot = Bot(symbols, NopLock(), BotOptions(instance_id=f"bench-limits-{streams}", status_interval=3600,
                                                 streams=streams), out=lambda line: None)
        thread = threading.Thread(target=bot.run_until_stopped, daemon=True)
        thread.start()
        time.sleep(15)  # start-up: markets, first buys (paced by the order budget)
        phases = {}
        for phase, moving in (("idle", False), ("trading", True)):
            if moving:
                sim.ticking.set()
            before, started = sim.weights.total, time.monotonic()
            time.sleep(seconds)
            used = sim.weights.total - before
            per_symbol_minute = used / n * 60 / (time.monotonic() - started)
            phases[phase] = {"weight": used, "weight_per_symbol_minute": round(per_symbol_minute, 1),
                             "symbols_within_6000": int(6000 // per_symbol_minute) if per_symbol_minute else None}
        bot.stop()
        thread.join(timeout=60)
        state = sim.control.state({})
        delays = fill_to_sell_ms(sim)
    return {
        **phases,
        "refused_429": state["refused429"], "refused_1015": state["refusedOrders"], "banned_418": state["banned418"],
        "fill_to_sell_ms": {"n": len(delays), "p50": percentile(delays, 0.5), "p99": percentile(delays, 0.99)},
    }


def fill_to_sell_ms(sim) -> list[int]:
    """For each buy fill, the first later sell one interval above it, by the simulator's clocks."""
    orders = sorted((o for o in sim.engine.orders() if o.side == "SELL"), key=lambda o: o.time)
    delays = []
    for trade in sim.engine.trades():
        if trade.side != "BUY":
            continue
        sell = next((o for o in orders if o.symbol == trade.symbol and o.price == trade.price + INTERVAL
                     and o.time >= trade.time), None)
        if sell is not None:
            delays.append(sell.time - trade.time)
    return delays


def percentile(values: list[int], p: float) -> int | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(p * len(ordered)))] if p != 0.5 else int(statistics.median(ordered))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--symbols", type=int, default=10)
    parser.add_argument("--seconds", type=float, default=60.0, help="length of the idle and of the trading phase")
    args = parser.parse_args()
    setup_django(sqlite_name="bench_limits.sqlite3")
    from trading.exchange import session

    session.claim_bot_share()  # this process is the bot, as runbot is
    results = {"symbols": args.symbols, "phase_seconds": args.seconds, "limits": "Binance default (6000/min, 100 orders/10 s)",
               "polling": run_mode(False, args.symbols, args.seconds), "streams": run_mode(True, args.symbols, args.seconds),
               "before": {"idle_weight_per_symbol_minute": 520, "trading_weight_per_symbol_minute": "620-670",
                          "source": "one ccxt client per symbol thread, polling every second (the code before the account session)"}}
    path = write_json("limits", results)
    print(path.read_text())


if __name__ == "__main__":
    main()

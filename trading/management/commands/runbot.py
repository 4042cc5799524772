"""`manage.py runbot`: run the grid trading loops until SIGTERM/SIGINT or --duration."""
from __future__ import annotations

import signal
from decimal import Decimal

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from django.db import transaction

from quantmesh import malloc
from trading.exchange import session
from trading.models import ExchangeAccount, Symbol
from trading.runner import Bot, BotOptions, InstanceConflict

PAPER_DEFAULTS = dict(
    price_interval=Decimal("150"),
    order_quantity=Decimal("50"),
    min_order_value=Decimal("10"),
    buy_window_size=5,
    sell_window_size=5,
    order_cleanup_threshold=30,
    cleanup_batch_size=5,
    position_safety_check=10,
)


def positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise CommandError(f"expected a number of seconds, got {text!r}") from None
    if value <= 0:
        raise CommandError(f"expected a positive number of seconds, got {text!r}")
    return value


class Command(BaseCommand):
    help = "Run the grid trading loops (one per symbol) until stopped."

    def add_arguments(self, parser):
        parser.add_argument("--symbols", help="comma-separated symbols, e.g. BTC/USDT,ETH/USDT (default: all running)")
        parser.add_argument("--account", help="exchange account name (default: every account)")
        parser.add_argument("--instance-id", help="this instance's id (default: QM_INSTANCE_ID)")
        parser.add_argument("--metrics-port", type=int, help="serve Prometheus metrics on this port (0: pick a free one)")
        parser.add_argument("--metrics-addr", default="127.0.0.1",
                            help="address the metrics server listens on (0.0.0.0 in a container)")
        parser.add_argument("--duration", type=positive_float, help="stop after this many seconds")
        parser.add_argument("--tick-interval", type=positive_float, default=1.0, help="seconds between ticks (default 1)")
        parser.add_argument("--status-interval", type=positive_float, default=10.0, help="seconds between status lines")
        parser.add_argument("--cancel-on-exit", action="store_true", help="cancel this instance's open orders on exit")
        parser.add_argument("--no-streams", action="store_true",
                            help="poll prices and fills by REST even where the exchange has streams")
        parser.add_argument("--replay", metavar="FILE.csv",
                            help="paper-trade one symbol on the built-in simulator replaying these candles, one "
                                 "point of each candle per tick (open, nearer extreme, other, close); stops at the end")
        parser.add_argument("--no-reconcile", action="store_true",
                            help="no reconcile pass of the bot's own; leave it to cron or Celery beat")

    def handle(self, *args, **opts):
        malloc.limit_arenas()  # before any thread starts
        session.claim_bot_share()
        instance_id = opts["instance_id"] or settings.QM_INSTANCE_ID
        symbols = self.select_symbols(opts["symbols"], opts["account"])
        simulator = None
        after_tick = None
        paper_url = settings.QM_PAPER_EXCHANGE_URL or None
        if opts["replay"]:
            simulator, after_tick = start_replay(symbols, opts["replay"], paper_url)
            paper_url = simulator.base_url
            opts["tick_interval"], opts["no_streams"] = 0.0, True  # each tick sees the point's fills by REST
            self.stdout.write(f"paper exchange: built-in simulator replaying {opts['replay']} at {paper_url}")
        elif paper_url is None and any(s.account.paper and not s.account.base_url for s in symbols):
            simulator = start_embedded_simulator(symbols)
            paper_url = simulator.base_url
            self.stdout.write(f"paper exchange: built-in simulator at {paper_url}")
        locks = build_locks(instance_id)
        if opts["metrics_port"] is not None:
            from trading.metrics import serve_metrics

            port = serve_metrics(opts["metrics_port"], addr=opts["metrics_addr"])
            self.stdout.write(f"metrics: http://{opts['metrics_addr']}:{port}/metrics")

        def out(line: str) -> None:
            self.stdout.write(line)
            self.stdout.flush()

        bot = Bot(
            symbols, locks,
            BotOptions(
                instance_id=instance_id, tick_interval=opts["tick_interval"], status_interval=opts["status_interval"],
                cancel_on_exit=opts["cancel_on_exit"], paper_url=paper_url, lock_backend=settings.QM_LOCK_BACKEND,
                lease_ttl_ms=settings.QM_LEASE_TTL_MS, reconcile=not opts["no_reconcile"],
                streams=not opts["no_streams"], after_tick=after_tick,
            ),
            out=out,
        )

        def on_signal(signum, frame):
            self.stdout.write(f"{signal.Signals(signum).name} received, stopping after the current tick")
            bot.stop()

        signal.signal(signal.SIGTERM, on_signal)
        signal.signal(signal.SIGINT, on_signal)
        self.stdout.write(
            f"runbot {instance_id}: {len(symbols)} symbol(s) {', '.join(s.symbol for s in symbols)}; "
            f"lock backend {settings.QM_LOCK_BACKEND}; Ctrl-C to stop"
        )
        try:
            bot.run_until_stopped(opts["duration"])
        except InstanceConflict as exc:
            raise CommandError(str(exc)) from None
        finally:
            locks.close()
            if simulator is not None:
                simulator.stop()
        self.stdout.write("stopped cleanly")

    def select_symbols(self, names: str | None, account: str | None) -> list[Symbol]:
        if not names and not account:
            ensure_paper_setup()
        qs = Symbol.objects.select_related("account").exclude(status=Symbol.Status.STOPPED)
        if account:
            if not ExchangeAccount.objects.filter(name=account).exists():
                raise CommandError(f"--account: no exchange account named {account!r}")
            qs = qs.filter(account__name=account)
        if names:
            wanted = [n.strip().upper() for n in names.split(",") if n.strip()]
            found = {s.symbol for s in qs.filter(symbol__in=wanted)}
            missing = [n for n in wanted if n not in found]
            if missing:
                raise CommandError(f"--symbols: not configured (or stopped): {', '.join(missing)}")
            qs = qs.filter(symbol__in=wanted)
        symbols = list(qs)
        if not symbols:
            raise CommandError("no symbol to trade: configure one in the admin or with `manage.py loadconfig`")
        return symbols


@transaction.atomic
def ensure_paper_setup() -> None:
    """With nothing configured, create the paper account and BTC/USDT so trading starts at once."""
    if ExchangeAccount.objects.exists():
        return
    account = ExchangeAccount.objects.create(name="paper", exchange_id="binance", paper=True)
    Symbol.objects.create(account=account, symbol="BTC/USDT", **PAPER_DEFAULTS)


def start_embedded_simulator(symbols: list[Symbol]):
    from trading.simulator import SimConfig, SimulatorServer, market_for
    from trading.simulator.futures import FuturesConfig, futures_market

    markets = sorted({s.symbol for s in symbols if s.account.paper and not s.account.is_futures})
    perpetuals = sorted({s.symbol for s in symbols if s.account.paper and s.account.is_futures})
    try:
        specs = [market_for(m) for m in markets or ["BTC/USDT"]]
        futures = FuturesConfig(markets=[futures_market(m) for m in perpetuals], tick_seconds=1.0) if perpetuals else None
    except ValueError as exc:
        raise CommandError(f"the built-in simulator cannot serve this symbol: {exc}") from None
    config = SimConfig(markets=specs, tick_seconds=1.0)
    # Spot under /api, USDⓈ-M futures under /fapi of the same server.
    server = SimulatorServer(config, host="127.0.0.1", port=0, streams=True, futures=futures)
    server.start()
    return server


def start_replay(symbols: list[Symbol], file: str, paper_url: str | None):
    from pathlib import Path

    from backtesting.driver import replay_server
    from backtesting.klines import KlinesError

    if paper_url:
        raise CommandError("--replay starts its own simulator: unset QM_PAPER_EXCHANGE_URL")
    if len(symbols) != 1:
        raise CommandError(f"--replay trades one symbol; choose one with --symbols (have {len(symbols)})")
    account = symbols[0].account
    if not account.paper or account.base_url or account.is_futures:
        raise CommandError(f"--replay needs a spot paper account on the built-in simulator; {account.name} is not")
    try:
        return replay_server(symbols[0].symbol, Path(file))
    except (KlinesError, ValueError) as exc:
        raise CommandError(str(exc)) from None


def build_locks(instance_id: str):
    from locking.setup import lock_service_from_settings

    try:
        return lock_service_from_settings(instance_id=instance_id)
    except Exception as exc:  # a lock backend that cannot start is a start-up error, never a fall-back
        raise CommandError(f"lock backend {settings.QM_LOCK_BACKEND!r} cannot start: {exc}") from None

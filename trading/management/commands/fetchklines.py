"""Download an exchange's candles into a CSV file the simulator and backtests replay."""
from __future__ import annotations

import sys
from datetime import UTC, datetime
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from trading import history
from trading.exchange import errors
from trading.exchange.dialects import ccxt_id, dialect_for
from trading.exchange.gateway import ExchangeGateway, build_exchange
from trading.exchange.session import LocalState, RequestBudget


def parse_date(text: str, option: str) -> int:
    """Milliseconds of a UTC date (2025-01-31) or ISO time (2025-01-31T12:00, Z or offset allowed)."""
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise CommandError(f"{option} {text!r} is not a date (2025-01-31) or an ISO time (2025-01-31T12:00Z)") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return int(moment.timestamp() * 1000)


def stamp(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=UTC).strftime("%Y-%m-%d %H:%M UTC")


class Command(BaseCommand):
    help = ("Download candles through ccxt's fetch_ohlcv, in pages within the exchange's request budget, "
            "into FILE.csv (open_time_ms,open,high,low,close,volume). An existing file is resumed where it ends.")

    def add_arguments(self, parser):
        parser.add_argument("file", metavar="FILE.csv")
        parser.add_argument("--exchange", default="binance", help="ccxt exchange id (default binance)")
        parser.add_argument("--market", choices=["spot", "usdm"], default="spot",
                            help="spot, or usdm for Binance USDⓈ-M perpetuals (default spot)")
        parser.add_argument("--symbol", required=True, help="for example BTC/USDT")
        parser.add_argument("--timeframe", default="1m", help="1m, 5m, 1h, 1d... (default 1m)")
        parser.add_argument("--since", required=True, help="first candle's UTC date or time")
        parser.add_argument("--until", help="last candle's UTC date or time (default: now)")
        parser.add_argument("--base-url", default="",
                            help="a server compatible with the exchange (the simulator); default the exchange's own")

    def handle(self, *args, **options):
        since = parse_date(options["since"], "--since")
        until = parse_date(options["until"], "--until") if options["until"] else int(datetime.now(UTC).timestamp() * 1000)
        path = Path(options["file"])
        if path.suffix.lower() != ".csv":
            raise CommandError(f"{path}: the file must end in .csv")
        if not path.parent.exists():
            raise CommandError(f"{path.parent} does not exist")
        try:
            exchange_id = ccxt_id(options["exchange"], options["market"])
            dialect = dialect_for(exchange_id)
            exchange = build_exchange(exchange_id, base_url=options["base_url"] or None)
        except errors.ExchangeFailure as exc:
            raise CommandError(str(exc)) from None
        if exchange.timeframes and options["timeframe"] not in exchange.timeframes:
            raise CommandError(f"--timeframe {options['timeframe']!r}: {exchange_id} offers "
                               f"{', '.join(exchange.timeframes)}")
        gateway = ExchangeGateway(exchange, budget=RequestBudget("fetchklines", LocalState(), dialect=dialect))
        try:
            gateway.market_rules(options["symbol"])
        except errors.ExchangeFailure as exc:
            raise CommandError(f"--symbol {options['symbol']!r}: {exc}") from None
        show = Progress(since, until, self.stderr)
        try:
            result = history.download(gateway, options["symbol"], options["timeframe"], since, until, path,
                                      progress=show)
        except history.HistoryError as exc:
            raise CommandError(str(exc)) from None
        except errors.ExchangeFailure as exc:
            raise CommandError(f"the exchange failed ({type(exc).__name__}: {exc}); run the command again to "
                               f"resume where {path} ends") from None
        finally:
            show.end()
        if result.resumed_from_ms is not None:
            self.stdout.write(f"resumed after {stamp(result.resumed_from_ms)}")
        span = ""
        if result.first_ms is not None and result.last_ms is not None:
            span = f" ({stamp(result.first_ms)} to {stamp(result.last_ms)})"
        self.stdout.write(f"{path}: {result.written} candles written{span} in {result.requests} request{'s' if result.requests != 1 else ''}"
                          + (f", {result.waits} waits for the request budget" if result.waits else "")
                          + (f"; {result.gaps} candles missing at the exchange" if result.gaps else ""))


class Progress:
    """A progress bar on a terminal; a line per tenth of the range otherwise."""

    WIDTH = 30

    def __init__(self, since: int, until: int, out):
        self.since, self.until, self.out = since, until, out
        self.tty = hasattr(sys.stderr, "isatty") and sys.stderr.isatty()
        self.shown_tenth = -1
        self.drawn = False

    def __call__(self, result: history.Download, reached_ms: int) -> None:
        share = min(1.0, (reached_ms - self.since) / max(1, self.until - self.since))
        text = f"{share:6.1%}  up to {stamp(min(reached_ms, self.until))}  {result.written} candles"
        if self.tty:
            filled = int(share * self.WIDTH)
            self.out.write(f"\r[{'#' * filled}{'.' * (self.WIDTH - filled)}] {text}", ending="")
            self.out.flush()
            self.drawn = True
        elif int(share * 10) > self.shown_tenth:
            self.shown_tenth = int(share * 10)
            self.out.write(text)

    def end(self) -> None:
        if self.drawn:
            self.out.write("")

"""`manage.py backtest`: the live grid engine over recorded candles on a simulated clock, one run
or a sweep of parameter sets in parallel; results stored, shown, and written as JSON and HTML."""
from __future__ import annotations

import itertools
import json
import os
import uuid
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from backtesting import klines
from backtesting.driver import DECIMAL_PARAMS, DEFAULT_BALANCES, DEFAULT_FEE, INT_PARAMS, Spec, market_spec
from backtesting.models import BacktestRun
from backtesting.report import FILL_MODEL, pct, render
from backtesting.worker import Outcome, run_all
from trading import grid
from trading.management.commands.runbot import PAPER_DEFAULTS

# The grid a backtest runs when the command line and --config say nothing: runbot's paper grid,
# without its start-up balance check (a backtest's balance is given).
DEFAULTS: dict[str, Any] = {k: v for k, v in PAPER_DEFAULTS.items() if k != "position_safety_check"}
PARAMS = DECIMAL_PARAMS + INT_PARAMS
RANK_COLUMNS = ("total_return", "buy_and_hold_return", "round_trips", "max_drawdown", "fees")


def parse_time(text: str, flag: str) -> int:
    """A UTC date or date and time (2025-01-31, 2025-01-31T12:00) as ms."""
    for fmt in ("%Y-%m-%d", "%Y-%m-%dT%H:%M", "%Y-%m-%d %H:%M", "%Y-%m-%dT%H:%M:%S"):
        try:
            return int(datetime.strptime(text, fmt).replace(tzinfo=UTC).timestamp() * 1000)
        except ValueError:
            continue
    raise CommandError(f"{flag}: {text!r} is not a date (YYYY-MM-DD or YYYY-MM-DDTHH:MM, UTC)")


def parse_decimal(text: str, what: str) -> Decimal:
    try:
        value = Decimal(text.strip())
    except InvalidOperation:
        raise CommandError(f"{what}: {text!r} is not a number") from None
    if not value.is_finite():
        raise CommandError(f"{what}: {text!r} is not a number")
    return value


def parse_param(name: str, text: str, reference: Decimal, tick: Decimal) -> tuple[Any, str]:
    """(value, as written) of a grid parameter; price_interval may be a percentage of the
    reference price (rounded to the tick)."""
    text = text.strip()
    if name in INT_PARAMS:
        try:
            whole = int(text)
        except ValueError:
            raise CommandError(f"{name}: {text!r} is not a whole number") from None
        if whole < 0:
            raise CommandError(f"{name}: {text!r} must not be negative")
        return whole, text
    if name == "price_interval" and text.endswith("%"):
        share = parse_decimal(text[:-1], name) / 100
        interval = grid.round_price(reference * share, tick)
        if interval <= 0:
            raise CommandError(f"price_interval {text} of {reference} rounds to nothing at tick {tick}")
        return interval, text
    value = parse_decimal(text, name)
    if value < 0:
        raise CommandError(f"{name}: {text!r} must not be negative")
    return value, text


class Command(BaseCommand):
    help = "Backtest a grid on recorded candles (from fetchklines) with the live engine, on a simulated clock."

    def add_arguments(self, parser):
        parser.add_argument("--klines", required=True, help="candle CSV (open_time_ms,open,high,low,close,volume)")
        parser.add_argument("--symbol", default="BTC/USDT")
        parser.add_argument("--from", dest="start", help="first candle's time, UTC (default: the file's first)")
        parser.add_argument("--to", dest="end", help="end of the range, UTC, exclusive (default: the file's end)")
        parser.add_argument("--config", help="a QuantMesh config.yaml: the grid of --symbol in it")
        for name in PARAMS:
            parser.add_argument(f"--{name.replace('_', '-')}", dest=name,
                                help="e.g. 0.5%% of the first close, or 150" if name == "price_interval" else None)
        parser.add_argument("--balance", action="append", default=[],
                            help="starting balance ASSET=AMOUNT, repeatable or comma-separated (default USDT=10000)")
        parser.add_argument("--fees", help="maker,taker fee rates, e.g. 0.001,0.001 or 0.1%%,0.1%% (default Binance's 0.1%%)")
        parser.add_argument("--sweep", nargs="+", metavar="NAME=V1,V2",
                            help="run every combination of these parameter values, ranked by total return")
        parser.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="processes for a sweep")
        parser.add_argument("--transport", choices=("local", "http"), default="local",
                            help="local: the matching engine in process; http: ccxt over HTTP to the simulator")
        parser.add_argument("--allow-unprofitable", action="store_true",
                            help="run a grid whose step does not cover the round-trip fees")
        parser.add_argument("--json", action="store_true", help="print the results as JSON")
        parser.add_argument("--report", help="write the HTML report (the best set's, for a sweep) to this file")

    def handle(self, *args, **opts):
        path = Path(opts["klines"])
        start = parse_time(opts["start"], "--from") if opts["start"] else None
        end = parse_time(opts["end"], "--to") if opts["end"] else None
        if start is not None and end is not None and end <= start:
            raise CommandError("--to must be after --from")
        try:
            market = market_spec(opts["symbol"], klines.first_price(path))
            checked = klines.check(path, market.tick, start_ms=start, end_ms=end)
        except (klines.KlinesError, ValueError) as exc:
            raise CommandError(str(exc)) from None
        reference = checked.first_close
        base = self._base_params(opts, reference, market.tick)
        maker, taker = self._fees(opts["fees"])
        balances = self._balances(opts["balance"])
        sets = self._sets(base, opts["sweep"], reference, market.tick)
        specs = []
        for params, written in sets:
            self._check_grid(params, checked, market, maker, opts["allow_unprofitable"])
            specs.append((Spec(klines=str(path.resolve()), symbol=opts["symbol"], start_ms=start, end_ms=end,
                               params=params, balances=balances, maker_fee=maker, taker_fee=taker,
                               transport=opts["transport"]), written))
        self.stderr.write(f"backtest {opts['symbol']}: {checked.candles} candles of {checked.interval_ms // 1000}s, "
                          f"{klines.when(checked.first_ms)} to {klines.when(checked.last_ms)}; "
                          f"{len(specs)} parameter set(s) on {min(opts['workers'], len(specs))} process(es)")
        outcomes = run_all([spec.as_dict() for spec, _ in specs], workers=opts["workers"],
                           settings_module=settings.SETTINGS_MODULE, checked=checked,
                           on_progress=self._progress(len(specs)), on_done=self._done(len(specs)))
        runs = self._store(specs, outcomes, sweep=uuid.uuid4().hex[:12] if len(specs) > 1 else "", market=market)
        self._finish(runs, opts)

    # --- inputs --------------------------------------------------------------------------------
    def _base_params(self, opts, reference: Decimal, tick: Decimal) -> dict[str, tuple[Any, str]]:
        params: dict[str, tuple[Any, str]] = {k: (v, str(v)) for k, v in DEFAULTS.items()}
        if opts["config"]:
            params.update(self._from_config(opts["config"], opts["symbol"]))
        for name in PARAMS:
            if opts.get(name) is not None:
                params[name] = parse_param(name, opts[name], reference, tick)
        return params

    @staticmethod
    def _from_config(file: str, symbol: str) -> dict[str, tuple[Any, str]]:
        from trading.configfile import ConfigError, parse_config

        try:
            plan = parse_config(Path(file).read_text(), source=file)
        except OSError as exc:
            raise CommandError(f"--config: cannot read {file}: {exc.strerror or exc}") from None
        except ConfigError as exc:
            raise CommandError(str(exc)) from None
        entries = [entry for entry in plan.symbols if entry.symbol == symbol]
        if not entries:
            raise CommandError(f"--config: {file} has no symbol {symbol} "
                               f"(it has {', '.join(e.symbol for e in plan.symbols) or 'none'})")
        fields = entries[0].model_fields()
        return {name: (fields[name], str(fields[name])) for name in PARAMS if fields.get(name) is not None}

    @staticmethod
    def _fees(text: str | None) -> tuple[Decimal, Decimal]:
        if not text:
            return DEFAULT_FEE, DEFAULT_FEE
        parts = [p.strip() for p in text.split(",")]
        if len(parts) != 2:
            raise CommandError(f"--fees: give maker,taker, e.g. 0.001,0.001 (got {text!r})")
        rates = [parse_decimal(p[:-1], "--fees") / 100 if p.endswith("%") else parse_decimal(p, "--fees") for p in parts]
        if any(not 0 <= rate < 1 for rate in rates):
            raise CommandError(f"--fees: a fee rate is a fraction from 0 to below 1 (got {text!r})")
        return rates[0], rates[1]

    @staticmethod
    def _balances(items: list[str]) -> dict[str, Decimal]:
        if not items:
            return dict(DEFAULT_BALANCES)
        balances = {}
        for item in ",".join(items).split(","):
            asset, sep, amount = item.strip().partition("=")
            if not sep or not asset.isalnum():
                raise CommandError(f"--balance: give ASSET=AMOUNT, e.g. USDT=1000 (got {item!r})")
            value = parse_decimal(amount, f"--balance {asset}")
            if value < 0:
                raise CommandError(f"--balance {asset}: must not be negative")
            balances[asset.upper()] = value
        return balances

    @staticmethod
    def _sets(base, sweep: list[str] | None, reference: Decimal, tick: Decimal):
        """Every parameter set: (values, as written)."""
        axes: list[tuple[str, list[tuple[Any, str]]]] = []
        for item in sweep or []:
            name, sep, values = item.partition("=")
            name = name.strip().replace("-", "_")
            if not sep or name not in PARAMS:
                raise CommandError(f"--sweep: {item!r} is not NAME=V1,V2,... with NAME one of {', '.join(PARAMS)}")
            parsed = [parse_param(name, v, reference, tick) for v in values.split(",") if v.strip()]
            if not parsed:
                raise CommandError(f"--sweep: {name} has no values")
            axes.append((name, parsed))
        sets = []
        for combo in itertools.product(*(values for _, values in axes)):
            merged = dict(base)
            merged.update({name: value for (name, _), value in zip(axes, combo)})
            sets.append(({k: v for k, (v, _) in merged.items()}, {k: text for k, (_, text) in merged.items()}))
        return sets

    @staticmethod
    def _check_grid(params: dict[str, Any], checked: klines.KlineFile, market, fee: Decimal, allow: bool) -> None:
        """Refuse, with the numbers, a grid whose orders the exchange would refuse or whose every
        round trip loses to fees (at the highest price of the range, where a step is worth least)."""
        interval, quantity = params["price_interval"], params["order_quantity"]
        if interval < market.tick:
            raise CommandError(f"price_interval {interval} is below the tick size {market.tick}")
        for price in (checked.low, checked.high):
            amount = grid.buy_amount(quantity, price, market.step)
            rules = grid.MarketRules(tick=market.tick, step=market.step, min_notional=market.min_notional,
                                     min_qty=market.min_qty)
            reason = grid.skip_reason(price, amount, params.get("min_order_value", Decimal(0)), rules)
            if reason is not None:
                raise CommandError(
                    f"order_quantity {quantity} buys {amount} {market.base} at {price} (step {market.step}), "
                    f"{reason.replace('_', ' ')}: exchange minimum notional {market.min_notional} {market.quote}, "
                    f"minimum quantity {market.min_qty}, min_order_value {params.get('min_order_value', 0)}")
        problem = grid.unprofitable_step(checked.high, interval, fee, market.tick)
        if problem and not allow:
            raise CommandError(f"{problem}. {checked.high} is the highest price in range, where a step is worth "
                               "least; --allow-unprofitable runs it anyway")

    # --- progress and output ---------------------------------------------------------------------
    def _progress(self, total_sets: int):
        tty = self.stderr.isatty()

        def show(index, done, total, ticks, fills, price) -> None:
            if total_sets > 1:
                return  # a sweep reports runs as they finish
            share = done / total if total else 1
            line = (f"{share:6.1%} {done}/{total} candles  price {price}  engine ticks {ticks}  fills {fills}")
            if tty:
                bar = "#" * int(share * 30)
                self.stderr.write(f"\r[{bar:<30}] {line}", ending="")
                self.stderr.flush()
            elif done * 10 // total != (done - max(1, total // 100)) * 10 // total:
                self.stderr.write(line)
        return show

    def _done(self, total_sets: int):
        finished = []

        def done(outcome: Outcome) -> None:
            finished.append(outcome)
            if total_sets == 1:
                if self.stderr.isatty():
                    self.stderr.write("")
                return
            if outcome.results is None:
                self.stderr.write(f"[{len(finished)}/{total_sets}] set {outcome.index + 1} failed: {outcome.error}")
            else:
                r = outcome.results
                self.stderr.write(f"[{len(finished)}/{total_sets}] set {outcome.index + 1}: return "
                                  f"{pct(r['total_return'])}, {r['round_trips']} round trips, {r['run']['seconds']} s")
        return done

    def _store(self, specs, outcomes: list[Outcome], *, sweep: str, market) -> list[BacktestRun]:
        runs = []
        for (spec, written), outcome in zip(specs, outcomes):
            resolved = {f"{k} (as run)": str(v) for k, v in spec.params.items() if written.get(k) != str(v)}
            parameters = {**written, **resolved, **{f"balance {k}": str(v) for k, v in spec.balances.items()},
                          "maker_fee": str(spec.maker_fee), "taker_fee": str(spec.taker_fee),
                          "transport": spec.transport, "tick_size": str(market.tick), "step_size": str(market.step)}
            run = BacktestRun(symbol=spec.symbol, klines=spec.klines, sweep=sweep, parameters=parameters,
                              fill_model=FILL_MODEL[:200])
            r = outcome.results
            if r is None:
                run.status, run.error = BacktestRun.Status.FAILED, outcome.error
            else:
                run.results = r
                run.candles, run.seconds = r["run"]["candles"], r["run"]["seconds"]
                run.started_ms, run.ended_ms = r["start_ms"], r["end_ms"]
                run.round_trips = r["round_trips"]
                for name in ("total_return", "buy_and_hold_return", "realized_pnl", "fees", "unrealized_pnl",
                             "max_drawdown"):
                    setattr(run, name, Decimal(r[name]))
            runs.append(run)
        ranked = sorted((r for r in runs if r.status == BacktestRun.Status.FINISHED),
                        key=lambda r: (-(r.total_return or 0), r.max_drawdown or 0))
        if sweep:
            for place, run in enumerate(ranked, start=1):
                run.rank = place
        for run in runs:
            run.save()
        return ranked + [r for r in runs if r.status == BacktestRun.Status.FAILED]

    def _finish(self, runs: list[BacktestRun], opts) -> None:
        best = runs[0] if runs and runs[0].status == BacktestRun.Status.FINISHED else None
        if opts["report"] and best is not None:
            title = f"Backtest {best.pk}: {best.symbol} grid, {best.parameters.get('price_interval')} interval"
            Path(opts["report"]).write_text(render(best.results, best.parameters, title=title))
        if opts["json"]:
            payload: Any = [{"id": r.pk, "rank": r.rank, "status": r.status, "parameters": r.parameters,
                             "error": r.error, "results": r.results} for r in runs]
            self.stdout.write(json.dumps(payload[0] if len(payload) == 1 else payload, indent=1))
        else:
            self._table(runs)
        if opts["report"] and best is not None:
            self.stderr.write(f"report: {opts['report']}")
        failed = [r for r in runs if r.status == BacktestRun.Status.FAILED]
        if failed:
            raise CommandError(f"{len(failed)} of {len(runs)} run(s) failed: {failed[0].error.splitlines()[0]}")

    def _table(self, runs: list[BacktestRun]) -> None:
        swept = [k for k in runs[0].parameters if len({str(r.parameters.get(k)) for r in runs}) > 1] if len(runs) > 1 else []
        if len(runs) == 1 and runs[0].status == BacktestRun.Status.FINISHED:
            from backtesting.report import figures

            r = runs[0]
            self.stdout.write(f"backtest {r.pk}: {r.symbol}, " + ", ".join(f"{k} {v}" for k, v in r.parameters.items()))
            for label, text in figures(r.results):
                self.stdout.write(f"  {label:<36} {text}")
            return
        header = ["rank", *swept, "return", "hold", "round trips", "max dd", "fees", "id"]
        lines = [header]
        for r in runs:
            if r.status != BacktestRun.Status.FINISHED:
                continue
            lines.append([str(r.rank), *(str(r.parameters.get(k)) for k in swept), pct(r.total_return or Decimal(0)),
                          pct(r.buy_and_hold_return or Decimal(0)), str(r.round_trips), pct(r.max_drawdown or Decimal(0)),
                          f"{r.fees:.2f}", str(r.pk)])
        widths = [max(len(row[i]) for row in lines) for i in range(len(header))]
        for row in lines:
            self.stdout.write("  ".join(cell.rjust(w) for cell, w in zip(row, widths)))

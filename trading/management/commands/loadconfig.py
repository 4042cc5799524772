"""`manage.py loadconfig FILE.yaml [--account NAME] [--dry-run]`: import the symbols of a QuantMesh
config.yaml (and say what its distributed_lock block means for the environment)."""
from __future__ import annotations

from decimal import Decimal

from django.core.management.base import BaseCommand, CommandError

from trading import configimport
from trading.configfile import MARKETS, ConfigError, ConfigPlan, LockConfig, load_config

DRY_RUN_WORDS = {"created": "would create", "updated": "would update", "unchanged": "unchanged"}


def show(value: object) -> str:
    """A value as the file would write it: Decimals without exponent or trailing zeros."""
    if isinstance(value, Decimal):
        return format(value.normalize(), "f")
    return str(value)


def refusal(source: str, errors: list[str]) -> str:
    count = len(errors)
    lines = [f"{source}: {count} problem{'s' if count != 1 else ''}; nothing was imported:"]
    lines += [f"  {error}" for error in errors]
    return "\n".join(lines)


class Command(BaseCommand):
    help = "Import symbols from a QuantMesh config.yaml (trading.symbols[], legacy trading.* fields, distributed_lock)."

    def add_arguments(self, parser):
        parser.add_argument("file", help="the QuantMesh config.yaml")
        parser.add_argument(
            "--account",
            help="put every symbol into this account (default: each symbol's exchange, app.current_exchange or 'paper')",
        )
        parser.add_argument(
            "--market", choices=MARKETS, default="auto",
            help="spot or usdm (USDⓈ-M perpetual futures); auto: futures when the file sets the Go QuantMesh's "
                 "futures keys (risk_control.max_leverage, exchanges.<name>.leverage), else spot",
        )
        parser.add_argument("--dry-run", action="store_true", help="check everything and show what would change; write nothing")

    def handle(self, *args, **opts):
        source = opts["file"]
        try:
            plan = load_config(source, account=opts["account"], market=opts["market"])
            result = configimport.symbols_import(plan.symbols, dry_run=opts["dry_run"])
        except ConfigError as exc:
            raise CommandError(refusal(source, exc.errors)) from None
        except configimport.ImportRefused as exc:
            raise CommandError(refusal(source, exc.errors)) from None
        self.report(plan, result)

    def report(self, plan: ConfigPlan, result: configimport.ImportResult) -> None:
        out = self.stdout.write
        if result.dry_run:
            out(f"{plan.source}: dry run, nothing is written")
        out("accounts:")
        for account in result.accounts:
            action = "would create" if result.dry_run and account.action == "created" else account.action
            market = ", USDⓈ-M futures" if account.market_type == "usdm" else ""
            out(f"  {account.name}: {action} (exchange {account.exchange_id}{market}, "
                f"{'paper' if account.paper else 'live'})")
            if not account.paper:
                key_env = account.api_key_env or "(not set)"
                secret_env = account.api_secret_env or "(not set)"
                out(f"    live account: its API key and secret come only from the environment variables "
                    f"{key_env} and {secret_env}")
                out(f"    (or files named by {key_env}_FILE / {secret_env}_FILE); keys in the file are not stored")
        out("symbols:")
        width = max((len(f"{s.symbol}@{s.account}") for s in result.symbols), default=0)
        for item, entry in zip(result.symbols, plan.symbols):
            action = DRY_RUN_WORDS[item.action] if result.dry_run else item.action
            line = f"  {action:<12} {item.symbol + '@' + item.account:<{width}}  {item.path}"
            if item.changes:
                line += ": " + ", ".join(f"{name} {show(old)} -> {show(new)}" for name, old, new in item.changes)
            elif item.action == "created":
                line += (f": price_interval {show(entry.price_interval)}, order_quantity {show(entry.order_quantity)}, "
                         f"windows {entry.buy_window_size}/{entry.sell_window_size}")
                if entry.account.market_type == "usdm":
                    leverage = f"{entry.leverage}x" if entry.leverage else "as set on the exchange"
                    line += f", leverage {leverage}, max leverage {entry.max_leverage}x"
            out(line)
        self.report_lock(plan.lock)
        if plan.ignored:
            out("ignored (QuantMesh keys this project does not use):")
            for path in plan.ignored:
                out(f"  {path}")
        for warning in (*plan.notes, *result.warnings):
            out(f"note: {warning}")
        counts = {action: sum(1 for s in result.symbols if s.action == action) for action in DRY_RUN_WORDS}
        if result.dry_run:
            out(f"dry run: {counts['created']} to create, {counts['updated']} to update, "
                f"{counts['unchanged']} unchanged; nothing written")
        else:
            out(self.style.SUCCESS(
                f"done: {counts['created']} created, {counts['updated']} updated, {counts['unchanged']} unchanged"
            ))

    def report_lock(self, lock: LockConfig) -> None:
        out = self.stdout.write
        if lock.backend == "redis":
            out("distributed lock: enabled; set in the environment of every runbot instance:")
            out("  QM_LOCK_BACKEND=redis")
            masked = lock.masked_url or ""
            hint = "   (password hidden: put it in place of ****)" if "****" in masked else ""
            out(f"  REDIS_URL={masked}{hint}")
        elif lock.present:
            out("distributed lock: disabled (single instance): QM_LOCK_BACKEND=nop, the default")
        else:
            out("distributed lock: not configured (single instance): QM_LOCK_BACKEND=nop, the default")

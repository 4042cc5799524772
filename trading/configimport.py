"""Importing symbols and accounts from a QuantMesh config file: all or nothing, checked by the
model rules before the first write, with a dry run that tells what would change."""
from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction

from trading.errors import TradingError
from trading.models import ExchangeAccount, Symbol

if TYPE_CHECKING:
    from trading.configfile import SymbolEntry

log = logging.getLogger("quantmesh.trading")


class ImportRefused(TradingError):
    """The model rules refused part of an import; nothing was written. `errors` names each problem."""

    def __init__(self, errors: list[str]) -> None:
        self.errors = errors
        super().__init__("\n".join(errors))


@dataclass(frozen=True)
class AccountImport:
    name: str
    action: str  # "created" or "existing"
    exchange_id: str
    paper: bool
    api_key_env: str
    api_secret_env: str
    market_type: str = "spot"


@dataclass(frozen=True)
class SymbolImport:
    path: str  # where the symbol is in the file, e.g. trading.symbols[0]
    account: str
    symbol: str
    action: str  # "created", "updated" or "unchanged"
    changes: tuple[tuple[str, object, object], ...]  # (field, old, new) for "updated"


@dataclass(frozen=True)
class ImportResult:
    accounts: tuple[AccountImport, ...]
    symbols: tuple[SymbolImport, ...]
    warnings: tuple[str, ...]
    dry_run: bool


def symbols_import(entries: Sequence[SymbolEntry], *, dry_run: bool = False) -> ImportResult:
    """Create or update the symbols (`trading.configfile.SymbolEntry`) and any missing
    accounts, all or nothing in one transaction. Every row is checked with `full_clean()` before
    the first write; a problem raises ImportRefused listing them all. An existing symbol (unique
    per account and symbol) gets only its grid parameters updated: its lattice anchor, market
    rules, fence token and status stay as they are. Existing accounts are used as they are.
    With dry_run the same checks run and the result tells what would change; nothing is written."""
    if dry_run:
        return _symbols_import(entries, write=False)
    try:
        with transaction.atomic():
            return _symbols_import(entries, write=True)
    except IntegrityError as exc:
        raise ImportRefused([f"the database refused the import (changed by someone else meanwhile?): {exc}"]) from None


def _symbols_import(entries: Sequence[SymbolEntry], *, write: bool) -> ImportResult:
    errors: list[str] = []
    warnings: list[str] = []
    accounts: dict[str, ExchangeAccount] = {}
    account_results: list[AccountImport] = []
    for entry in entries:
        spec = entry.account
        if spec.name in accounts:
            continue
        account = ExchangeAccount.objects.filter(name=spec.name).first()
        if account is None:
            account = ExchangeAccount(
                name=spec.name, exchange_id=spec.exchange_id, paper=spec.paper, market_type=spec.market_type,
                api_key_env=spec.api_key_env, api_secret_env=spec.api_secret_env,
            )
            try:
                account.full_clean()
            except ValidationError as exc:
                errors.extend(f"account {spec.name} ({spec.named_by}): {m}" for m in _validation_messages(exc))
        else:
            if account.market_type != spec.market_type:
                errors.append(f"account {account.name} exists for {account.get_market_type_display()}, but "
                              f"{entry.path} is imported as {spec.market_type} (see --market)")
            if entry.exchange and account.exchange_id != spec.exchange_id:
                warnings.append(f"account {account.name} trades on {account.exchange_id}, but {entry.path} "
                                f"names the exchange {entry.exchange}")
            if account.paper != spec.paper:
                kind = "paper" if account.paper else "live"
                warnings.append(f"account {account.name} exists and stays {kind}")
        accounts[spec.name] = account
        account_results.append(AccountImport(
            name=account.name, action="existing" if account.pk else "created", exchange_id=account.exchange_id,
            paper=account.paper, api_key_env=account.api_key_env, api_secret_env=account.api_secret_env,
            market_type=account.market_type,
        ))

    planned: list[tuple[Symbol, SymbolImport]] = []
    for entry in entries:
        account = accounts[entry.account.name]
        fields = entry.model_fields()
        existing = Symbol.objects.filter(account=account, symbol=entry.symbol).first() if account.pk else None
        if existing is None:
            row = Symbol(account=account, symbol=entry.symbol, **fields)
            changes: tuple[tuple[str, object, object], ...] = ()
            action = "created"
        else:
            row = existing
            changes = tuple((name, getattr(row, name), value) for name, value in fields.items() if getattr(row, name) != value)
            for name, _, value in changes:
                setattr(row, name, value)
            action = "updated" if changes else "unchanged"
        try:
            row.full_clean(exclude=None if account.pk else ["account"])
        except ValidationError as exc:
            errors.extend(f"{entry.path} ({entry.symbol}): {m}" for m in _validation_messages(exc))
        problem = row.fee_problem()
        if problem:
            if action == "created":  # imported, but not started: runbot checks again at the live price
                row.status, row.pause_reason = Symbol.Status.PAUSED, f"fee check: {problem}"[:200]
            warnings.append(f"{entry.path} ({entry.symbol}): {problem}. "
                            + ("Imported paused" if action == "created" else "runbot will pause it at start")
                            + "; set allow_unprofitable in the admin to trade it anyway")
        planned.append((row, SymbolImport(entry.path, account.name, entry.symbol, action, changes)))

    if errors:
        raise ImportRefused(errors)
    if write:
        for account in accounts.values():
            if account.pk is None:
                account.save(force_insert=True)
        for row, result in planned:
            if result.action == "created":
                row.account = accounts[result.account]
                row.save(force_insert=True)
            elif result.action == "updated":
                row.save(update_fields=[name for name, _, _ in result.changes] + ["updated_at"])
        for _row, result in planned:
            if result.action != "unchanged":
                log.info("symbol %s@%s %s from %s", result.symbol, result.account, result.action, result.path)
    return ImportResult(tuple(account_results), tuple(result for _, result in planned), tuple(warnings), not write)


def _validation_messages(exc: ValidationError) -> list[str]:
    if hasattr(exc, "error_dict"):
        return [f"{name}: {message}" if name != "__all__" else message
                for name, messages in exc.message_dict.items() for message in messages]
    return list(exc.messages)

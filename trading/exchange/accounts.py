"""Build a gateway for an `ExchangeAccount`: keys from the environment, live trading guarded."""
from __future__ import annotations

import json
import logging
import urllib.request

import ccxt
from django.conf import settings

from trading.exchange.dialects import ccxt_id, dialect_for
from trading.exchange.errors import LiveTradingDisabled
from trading.exchange.gateway import ExchangeGateway, build_exchange

log = logging.getLogger("quantmesh.exchange")

PAPER_API_KEY = "qm-paper"
PAPER_API_SECRET = "qm-paper-secret"


def account_ccxt_id(account) -> str:
    """The ccxt exchange id that trades `account`'s market (binanceusdm for Binance USDⓈ-M futures)."""
    return ccxt_id(account.exchange_id, getattr(account, "market_type", "spot"))


def exchange_for(account, *, paper_url: str | None = None, timeout_ms: int = 5000, pro: bool = False,
                 ws_url: str | None = None) -> ccxt.Exchange:
    """The ccxt client of `account`. Paper accounts talk to the simulator at `account.base_url`,
    `QM_PAPER_EXCHANGE_URL` or `paper_url` (in that order); anything else needs
    QM_LIVE_TRADING=1."""
    key, secret = account.credentials()
    if account.paper:
        base_url = paper_base_url(account, paper_url)
        if not base_url:
            raise LiveTradingDisabled(f"paper account {account.name} has no simulator URL")
        return build_exchange(account_ccxt_id(account), api_key=key or PAPER_API_KEY, secret=secret or PAPER_API_SECRET,
                              base_url=base_url, timeout_ms=timeout_ms, recv_window_ms=settings.QM_RECV_WINDOW_MS,
                              pro=pro, ws_url=ws_url)
    if not settings.QM_LIVE_TRADING:
        raise LiveTradingDisabled(
            f"account {account.name} is live but QM_LIVE_TRADING is off; set QM_LIVE_TRADING=1 to trade real money"
        )
    if not key or not secret:
        raise LiveTradingDisabled(
            f"account {account.name}: environment variables {account.api_key_env or '(unset)'} / "
            f"{account.api_secret_env or '(unset)'} hold no key or secret"
        )
    return build_exchange(account_ccxt_id(account), api_key=key, secret=secret, base_url=account.base_url or None,
                          timeout_ms=timeout_ms, recv_window_ms=settings.QM_RECV_WINDOW_MS, pro=pro, ws_url=ws_url)


def paper_base_url(account, paper_url: str | None = None) -> str | None:
    return account.base_url or settings.QM_PAPER_EXCHANGE_URL or paper_url


def gateway_for(account, *, paper_url: str | None = None, timeout_ms: int = 5000, budget=None,
                markets=None) -> ExchangeGateway:
    """A gateway for `account` (see `exchange_for`). Threads of a process share an account's
    budget and markets through `trading.exchange.session.session_for(account).gateway()`."""
    return ExchangeGateway(exchange_for(account, paper_url=paper_url, timeout_ms=timeout_ms),
                           budget=budget, markets=markets)


def stream_url(account, paper_url: str | None = None) -> str | None:
    """Where the account's WebSocket streams are: a paper account asks its simulator (None when it
    serves none); an exchange whose dialect streams from the exchange's own URLs needs no override
    (""); custom base URLs and dialects without streams have none here (None)."""
    if account.paper:
        base = paper_base_url(account, paper_url)
        if not base:
            return None
        try:
            with urllib.request.urlopen(base.rstrip("/") + "/sim/streams", timeout=3) as reply:
                return json.loads(reply.read())["url"]
        except Exception as exc:
            log.info("%s: the simulator serves no streams (%s): REST only", account.name, exc)
            return None
    if dialect_for(account_ccxt_id(account)).streams and not account.base_url:
        return ""
    return None

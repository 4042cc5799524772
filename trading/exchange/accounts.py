"""Build a gateway for an `ExchangeAccount`: keys from the environment, live trading guarded."""
from __future__ import annotations

from django.conf import settings

from trading.exchange.errors import LiveTradingDisabled
from trading.exchange.gateway import ExchangeGateway, build_exchange

PAPER_API_KEY = "qm-paper"
PAPER_API_SECRET = "qm-paper-secret"


def gateway_for(account, *, paper_url: str | None = None, timeout_ms: int = 5000, budget=None,
                markets=None) -> ExchangeGateway:
    """A gateway for `account`. Paper accounts talk to the simulator at `account.base_url`,
    `QM_PAPER_EXCHANGE_URL` or `paper_url` (in that order); anything else needs
    QM_LIVE_TRADING=1. Threads of a process share an account's budget and markets through
    `trading.exchange.session.session_for(account).gateway()`."""
    key, secret = account.credentials()
    if account.paper:
        base_url = account.base_url or settings.QM_PAPER_EXCHANGE_URL or paper_url
        if not base_url:
            raise LiveTradingDisabled(f"paper account {account.name} has no simulator URL")
        return ExchangeGateway(
            build_exchange(
                account.exchange_id, api_key=key or PAPER_API_KEY, secret=secret or PAPER_API_SECRET,
                base_url=base_url, timeout_ms=timeout_ms, recv_window_ms=settings.QM_RECV_WINDOW_MS,
            ),
            budget=budget, markets=markets,
        )
    if not settings.QM_LIVE_TRADING:
        raise LiveTradingDisabled(
            f"account {account.name} is live but QM_LIVE_TRADING is off; set QM_LIVE_TRADING=1 to trade real money"
        )
    if not key or not secret:
        raise LiveTradingDisabled(
            f"account {account.name}: environment variables {account.api_key_env or '(unset)'} / "
            f"{account.api_secret_env or '(unset)'} hold no key or secret"
        )
    return ExchangeGateway(
        build_exchange(account.exchange_id, api_key=key, secret=secret, base_url=account.base_url or None,
                       timeout_ms=timeout_ms, recv_window_ms=settings.QM_RECV_WINDOW_MS),
        budget=budget, markets=markets,
    )

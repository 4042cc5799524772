"""`manage.py` with the protections against duplicate orders taken out, for the fault tests'
control runs: they show what the fence, the ledger's one-live-order-per-slot rule, the pinned
request timestamp and the lease guard prevent. Production code has no way to switch them off;
this module replaces them from outside, in a process of its own.

    python -m tests.ha.unprotected runbot ...
"""
from __future__ import annotations

import os
import secrets
import sys


def unprotect() -> None:
    from trading import runner, services
    from trading.exchange.gateway import ExchangeGateway

    services.fence_check = lambda **kwargs: None  # no fence: a stale writer's rows are accepted
    # No live-slot key: the database takes a second live order.
    services.slot_key = lambda *args: None  # type: ignore[assignment]  # None is what switches the key off
    deterministic = services.client_order_id
    # Ids no longer deterministic per intent, as a client that makes one up per request.
    services.client_order_id = lambda **kwargs: f"{deterministic(**kwargs)}-x{secrets.token_hex(3)}"

    create_limit_order = ExchangeGateway.create_limit_order

    def signed_at_send_time(self, **kwargs):  # as a naive client would: the request window moves
        return create_limit_order(self, **{**kwargs, "signed_at_ms": None})

    ExchangeGateway.create_limit_order = signed_at_send_time  # type: ignore[method-assign]  # replacing it is the point here

    start_symbol = runner.Bot._start_symbol

    def unguarded(self, symbol, writer, guard=None):  # a lost lease no longer stops the thread
        return start_symbol(self, symbol, writer, guard=lambda: True)

    runner.Bot._start_symbol = unguarded  # type: ignore[method-assign]  # replacing it is the point here


if __name__ == "__main__":
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "quantmesh.settings")
    import django

    django.setup()
    unprotect()
    from django.core.management import execute_from_command_line

    execute_from_command_line(["manage.py", *sys.argv[1:]])

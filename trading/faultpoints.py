"""Named points where the fault-injection suite can freeze a bot process.

With QM_TEST_PAUSE_AT=<name> (a test-only setting), the process stops itself with SIGSTOP the
first time it reaches that point, so a test can resume it with SIGCONT at a moment it chooses
(for example after its lease has expired and another instance took over). Does nothing
otherwise.
"""
from __future__ import annotations

import logging
import signal
import threading

from django.conf import settings

log = logging.getLogger("quantmesh.faultpoints")
_done: set[str] = set()


def reached(name: str) -> None:
    if settings.QM_TEST_PAUSE_AT != name or name in _done:
        return
    _done.add(name)
    log.warning("fault point %s: stopping this process (SIGSTOP) until it is continued", name)
    # Aimed at this thread, so the stop takes effect before this thread runs another line (a
    # process-wide SIGSTOP may be taken by another thread first, letting this one run on).
    signal.pthread_kill(threading.get_ident(), signal.SIGSTOP)

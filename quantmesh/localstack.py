"""`make run`: the paper exchange, the admin and a paper-trading bot side by side; Ctrl-C stops
them all cleanly.

    python -m quantmesh.localstack [--port 8000] [--exchange-port 8765]

The simulator runs as its own process on a known port, so the admin (reconcile now, cancel
orders) and the bot talk to the same paper exchange.
"""
from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from quantmesh import malloc

ROOT = Path(__file__).resolve().parent.parent


def main() -> int:
    parser = argparse.ArgumentParser(description="Run the admin and the paper bot together.")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--exchange-port", type=int, default=8765)
    args = parser.parse_args()
    manage = [sys.executable, str(ROOT / "manage.py")]
    env = {**os.environ, "QM_DEBUG": os.environ.get("QM_DEBUG", "1"), "PYTHONUNBUFFERED": "1"}
    children = []
    if not env.get("QM_PAPER_EXCHANGE_URL"):
        env["QM_PAPER_EXCHANGE_URL"] = f"http://127.0.0.1:{args.exchange_port}"
        children.append(subprocess.Popen(
            [*manage, "simexchange", "--port", str(args.exchange_port), "--tick-seconds", "1"], env=env,
            start_new_session=True,
        ))
        if not wait_for_exchange(env["QM_PAPER_EXCHANGE_URL"], children[0]):
            return 1
    children += [
        subprocess.Popen([*manage, "runserver", "--noreload", f"127.0.0.1:{args.port}"], env=env, start_new_session=True),
        subprocess.Popen([*manage, "runbot"], env=malloc.bot_environment(env), start_new_session=True),
    ]

    stopping: list[bool] = []

    def stop(signum=None, frame=None):
        if stopping:
            return
        stopping.append(True)
        for child in children:
            if child.poll() is None:
                os.killpg(child.pid, signal.SIGTERM)

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    try:
        while all(child.poll() is None for child in children):
            time.sleep(0.2)
    finally:
        stop()
        codes = [child.wait() for child in children]
    print("stopped: exchange, admin and bot")
    # runserver exits with -SIGTERM when terminated; the bot must exit 0.
    return 0 if codes[-1] == 0 else codes[-1]


def wait_for_exchange(url: str, proc: subprocess.Popen, timeout: float = 20.0) -> bool:
    """Wait until the paper exchange answers (or its process ends)."""
    import urllib.request

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            with urllib.request.urlopen(f"{url}/api/v3/ping", timeout=1):
                return True
        except OSError:
            time.sleep(0.1)
    print(f"the paper exchange did not start at {url} (is the port free? use --exchange-port)", file=sys.stderr)
    return False


if __name__ == "__main__":
    sys.exit(main())

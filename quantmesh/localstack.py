"""`make run`: the admin and a paper-trading bot side by side; Ctrl-C stops both cleanly.

    python -m quantmesh.localstack [--port 8000]
"""
from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def main() -> int:
    parser = argparse.ArgumentParser(description="Run the admin and the paper bot together.")
    parser.add_argument("--port", type=int, default=8000)
    args = parser.parse_args()
    manage = [sys.executable, str(ROOT / "manage.py")]
    env = {**os.environ, "QM_DEBUG": os.environ.get("QM_DEBUG", "1"), "PYTHONUNBUFFERED": "1"}
    children = [
        subprocess.Popen([*manage, "runserver", "--noreload", f"127.0.0.1:{args.port}"], env=env, start_new_session=True),
        subprocess.Popen([*manage, "runbot"], env=env, start_new_session=True),
    ]

    stopping = []

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
    print("stopped: admin and bot")
    # runserver exits with -SIGTERM when terminated; the bot must exit 0.
    return 0 if codes[1] == 0 else codes[1]


if __name__ == "__main__":
    sys.exit(main())

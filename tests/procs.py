"""Real processes for tests: start `manage.py` commands against the test database, and wait for
conditions (never for fixed times)."""
from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import quote

from django.db import connection

ROOT = Path(__file__).resolve().parent.parent


def database_url() -> str:
    """A DATABASE_URL pointing a child process at the database this test uses."""
    s = connection.settings_dict
    if connection.vendor == "sqlite":
        return f"sqlite:///{Path(s['NAME']).resolve()}"
    scheme = {"postgresql": "postgres", "mysql": "mysql"}[connection.vendor]
    auth = quote(s["USER"] or "", safe="") + (":" + quote(s["PASSWORD"], safe="") if s["PASSWORD"] else "")
    port = f":{s['PORT']}" if s["PORT"] else ""
    return f"{scheme}://{auth}@{s['HOST']}{port}/{s['NAME']}"


def child_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "DJANGO_SETTINGS_MODULE"}
    env.update(
        DJANGO_SETTINGS_MODULE="quantmesh.settings",
        DATABASE_URL=database_url(),
        SECRET_KEY=os.environ.get("SECRET_KEY", "test-only-secret-key"),
        QM_DEBUG="0",
        QM_SSL_REDIRECT="0",
        PYTHONUNBUFFERED="1",
    )
    env.update(extra)
    return env


def manage(*args: str, log_path: Path | None = None, unprotected: bool = False, **env: str) -> subprocess.Popen:
    """Start `manage.py ARGS` in a new process group (so signals reach only it); `unprotected`
    runs it with the protections against duplicate orders taken out (tests.ha.unprotected)."""
    out = open(log_path, "ab") if log_path else subprocess.DEVNULL
    entry = ["-m", "tests.ha.unprotected"] if unprotected else [str(ROOT / "manage.py")]
    return subprocess.Popen(
        [sys.executable, *entry, *args], cwd=ROOT, env=child_env(**env),
        stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
    )


def wait_for(condition, *, timeout: float = 60.0, what: str = "condition", proc: subprocess.Popen | None = None,
             log_path: Path | None = None):
    """Poll `condition()` until it returns something truthy; fail with `what` after `timeout`."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"process exited with {proc.returncode} while waiting for {what}\n{_tail(log_path)}")
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}\n{_tail(log_path)}")
        time.sleep(0.02)


def _tail(path: Path | None, lines: int = 40) -> str:
    if path is None or not path.exists():
        return ""
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])

"""Where the external services for tests live, and the skip-or-fail rule.

A test that needs Redis (or another service) asks for it through `require_redis()`.
When the service is not reachable the test is skipped with the reason, unless
`QM_REQUIRE_SERVICES=1` is set (as in CI), in which case it fails.
"""
from __future__ import annotations

import os
import socket
from typing import NoReturn
from urllib.parse import urlsplit

import pytest

DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/15"


def services_required() -> bool:
    return os.environ.get("QM_REQUIRE_SERVICES", "") in {"1", "true", "yes"}


def missing_service(reason: str) -> NoReturn:
    if services_required():
        pytest.fail(f"{reason} (QM_REQUIRE_SERVICES=1 forbids skipping)", pytrace=False)
    pytest.skip(reason)


def _reachable(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def redis_url() -> str:
    return os.environ.get("QM_TEST_REDIS_URL") or os.environ.get("REDIS_URL") or DEFAULT_REDIS_URL


def require_redis() -> str:
    """Return a Redis URL for tests, or skip/fail when Redis is not reachable."""
    url = redis_url()
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 6379
    if not _reachable(host, port):
        missing_service(f"Redis is not reachable at {host}:{port} (set REDIS_URL)")
    return url

"""The bot caps glibc's malloc arenas at start-up, unless the operator set MALLOC_ARENA_MAX."""
import platform

import pytest

from trading.runner import limit_malloc_arenas


def test_the_operators_malloc_arena_max_wins(monkeypatch):
    monkeypatch.setenv("MALLOC_ARENA_MAX", "4")
    assert limit_malloc_arenas() is False


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="mallopt(M_ARENA_MAX) is glibc's")
def test_the_cap_is_set_on_glibc(monkeypatch):
    monkeypatch.delenv("MALLOC_ARENA_MAX", raising=False)
    assert limit_malloc_arenas(2) is True

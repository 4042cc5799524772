"""glibc malloc settings for the bot: arenas capped at start-up, per-thread caches off in the
environment a bot is started with; the operator's own settings win."""
import json
import platform
import subprocess
import sys
from pathlib import Path

import pytest

from quantmesh import malloc

ROOT = Path(__file__).resolve().parents[2]

glibc_only = pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="these settings are glibc's")


def test_the_operators_malloc_arena_max_wins(monkeypatch):
    monkeypatch.setenv("MALLOC_ARENA_MAX", "4")
    assert malloc.limit_arenas() is False


@glibc_only
def test_the_cap_is_set_on_glibc(monkeypatch):
    monkeypatch.delenv("MALLOC_ARENA_MAX", raising=False)
    assert malloc.limit_arenas(2) is True


def test_a_bot_starts_without_thread_caches():
    env = malloc.bot_environment({"PATH": "/bin"})
    assert env == {"PATH": "/bin", "GLIBC_TUNABLES": "glibc.malloc.tcache_count=0"}


def test_other_tunables_are_kept():
    env = malloc.bot_environment({"GLIBC_TUNABLES": "glibc.malloc.mmap_threshold=131072"})
    assert env["GLIBC_TUNABLES"] == "glibc.malloc.mmap_threshold=131072:glibc.malloc.tcache_count=0"


def test_the_operators_thread_cache_setting_wins():
    env = {"GLIBC_TUNABLES": "glibc.malloc.tcache_count=3"}
    assert malloc.bot_environment(env) == env


# In a fresh process: allocate 20 chunks of 100 bytes and free them. glibc's per-thread cache takes
# up to 7 of a size; the rest go to the fast bins, which mallinfo2 reports as free (fsmblks).
FREED_TO_FAST_BINS = """
import ctypes, json
from quantmesh.malloc import mallinfo
libc = ctypes.CDLL("libc.so.6")
libc.malloc.restype = ctypes.c_void_p
libc.free.argtypes = [ctypes.c_void_p]
mallinfo()  # looks glibc up now, not between the two readings
chunks = [libc.malloc(100) for _ in range(20)]
before = mallinfo().fsmblks
for chunk in chunks:
    libc.free(chunk)
print(json.dumps(mallinfo().fsmblks - before))
"""


def freed_to_fast_bins(env: dict[str, str]) -> int:
    out = subprocess.run([sys.executable, "-c", FREED_TO_FAST_BINS], cwd=ROOT, env=env, capture_output=True,
                         text=True, check=True)
    return json.loads(out.stdout)


@glibc_only
def test_the_environment_turns_the_thread_cache_off_in_the_started_process():
    base = {"PATH": "/usr/bin:/bin"}
    cached = freed_to_fast_bins(base)
    uncached = freed_to_fast_bins(malloc.bot_environment(base))
    # Without the cache every freed chunk reaches the fast bins; with it, 7 of them stay cached.
    assert uncached > cached
    assert uncached >= 20 * 100

"""glibc malloc settings for the bot's process.

`runbot` runs a thread per symbol under one GIL. Two of glibc's defaults cost such a process
resident memory and buy it nothing:

- An arena per thread that allocates (up to 8 per core), each keeping the pages its freed chunks
  leave behind. `limit_arenas()` caps them at 2 when the bot starts (mallopt).
- A cache per thread of freed chunks (tcache: up to 7 chunks of each of 64 sizes), which glibc
  counts as in use. With 50 symbol threads these caches filled slowly: malloc's bytes in use grew
  by 1.2 to 1.4 MiB per simulated hour, while the bytes the program holds stayed flat (jemalloc's
  count of them, and Python's). Turned off, that growth was 0.18 MiB. glibc reads this setting only
  when a process starts (`GLIBC_TUNABLES`), so `bot_environment()` puts it in the environment that
  a bot is started with (`make run` does; so do the benchmarks).

Neither matters when another allocator is preloaded (jemalloc in the compose file).
"""
from __future__ import annotations

import ctypes
import ctypes.util
import functools
import os
from typing import Mapping

ARENAS = 2
_M_ARENA_MAX = -8  # mallopt() parameter number in glibc's malloc.h

THREAD_CACHE_TUNABLE = "glibc.malloc.tcache_count"


class MallInfo2(ctypes.Structure):
    """glibc's `struct mallinfo2` (malloc.h, glibc 2.33 and later): byte counts of its heaps."""

    _fields_ = [(name, ctypes.c_size_t) for name in
                ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks", "keepcost")]


@functools.cache
def _libc_function(name: str):
    """A function of glibc's by name; None for another C library (or an older glibc). Looked up
    once: find_library runs ldconfig, and its allocations would disturb what mallinfo() reads."""
    try:
        return getattr(ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6"), name)
    except (OSError, AttributeError):
        return None


def mallinfo() -> MallInfo2 | None:
    """glibc's malloc statistics for this process (mallinfo2); None when there are none."""
    function = _libc_function("mallinfo2")
    if function is None:
        return None
    function.restype = MallInfo2  # the same on every call; ctypes keeps it on the function
    return function()


def limit_arenas(count: int = ARENAS) -> bool:
    """Cap glibc's malloc arenas for this process (call before starting threads). Does nothing when
    MALLOC_ARENA_MAX is set in the environment (the operator's choice wins) or the C library is
    not glibc. True when the cap was set."""
    if "MALLOC_ARENA_MAX" in os.environ:
        return False
    mallopt = _libc_function("mallopt")
    return mallopt is not None and mallopt(_M_ARENA_MAX, count) == 1


def bot_environment(env: Mapping[str, str]) -> dict[str, str]:
    """`env` with glibc's per-thread malloc caches turned off, for starting a bot process. A
    tcache setting the operator already put in GLIBC_TUNABLES is kept; other tunables there too.
    Other C libraries ignore the variable."""
    out = dict(env)
    tunables = [t for t in out.get("GLIBC_TUNABLES", "").split(":") if t]
    if not any(t.split("=", 1)[0] == THREAD_CACHE_TUNABLE for t in tunables):
        out["GLIBC_TUNABLES"] = ":".join([*tunables, f"{THREAD_CACHE_TUNABLE}=0"])
    return out

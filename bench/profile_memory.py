"""Where a running bot's memory goes, and what grows: `runbot` on the simulator, looked at from inside.

    python -m bench.profile_memory [--symbols 20] [--seconds 360] [--samples 4] [--no-tracemalloc]
                                   [--frames 1] [--jemalloc | --thread-caches] [--out FILE]

The bot runs as a real `manage.py runbot` process (SQLite, tick 1 s, one price step every 6 s, so
360 s is one simulated hour), started through this module so that it answers SIGUSR2 with a
report of its memory. It is started as `make run` starts it, with glibc's per-thread malloc caches
off (quantmesh.malloc); --thread-caches keeps them, as in a bot started without that setting:

- RSS and its anonymous part (/proc);
- malloc: bytes in use and bytes free. On glibc (mallinfo2), chunks that its per-thread caches
  keep for reuse count as in use. With --jemalloc (LD_PRELOAD, as the compose file runs the bot),
  jemalloc's own statistics: bytes the program holds (stats.allocated) and bytes it keeps
  resident beyond them;
- SQLite's own allocations (sqlite3_memory_used), part of malloc's bytes in use;
- Python's small-object allocator, which maps its arenas itself: bytes in its arenas and bytes in
  blocks that objects hold;
- the resident part of the threads' stacks;
- Python's allocated blocks, and with tracemalloc on, the bytes Python has allocated and a
  snapshot of where (--frames: how many calls of each allocation's traceback it keeps).

The first report comes after the warm-up (every symbol trading, 30 s more). Between the second
report and the last, the allocation sites that grew most are listed: a cache or a list that keeps
growing shows up there by file and line. tracemalloc roughly doubles the bot's CPU and adds its
own memory to RSS (its own bookkeeping shows up as malloc's free bytes), so RSS is compared only
between runs with the same setting. The output goes to stdout and to --out (default
bench/profiles/memory_python.txt; memory_native.txt, memory_thread_caches.txt and
memory_jemalloc.txt there are runs with tracemalloc off: on glibc as `make run` starts the bot, on
glibc with its per-thread caches, and on jemalloc).
"""
from __future__ import annotations

import argparse
import ctypes
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OUTPUT = ROOT / "bench" / "profiles" / "memory_python.txt"


# --- inside the bot ------------------------------------------------------------------------------

def _jemalloc_counters() -> dict | None:
    """jemalloc's own statistics when it is the process's malloc (LD_PRELOAD), else None: bytes
    the program holds (stats.allocated) and bytes jemalloc keeps resident beyond them."""
    mallctl = getattr(ctypes.CDLL(None), "mallctl", None)
    if mallctl is None:
        return None
    epoch = ctypes.c_uint64(1)  # writing the epoch refreshes the statistics read below
    mallctl(b"epoch", None, None, ctypes.byref(epoch), ctypes.c_size_t(ctypes.sizeof(epoch)))
    values = {}
    for name in (b"stats.allocated", b"stats.resident"):
        value, size = ctypes.c_size_t(0), ctypes.c_size_t(ctypes.sizeof(ctypes.c_size_t))
        if mallctl(name, ctypes.byref(value), ctypes.byref(size), None, ctypes.c_size_t(0)) != 0:
            return None
        values[name] = value.value
    allocated = values[b"stats.allocated"]
    return {"malloc_in_use": allocated, "malloc_free": values[b"stats.resident"] - allocated}


def _glibc_counters() -> dict:
    """glibc's malloc: bytes in use (the program's, plus chunks its per-thread caches keep) and
    bytes free in its heaps; {} for another C library or glibc before 2.33."""
    from quantmesh.malloc import mallinfo

    info = mallinfo()
    if info is None:
        return {}
    return {"malloc_in_use": info.uordblks, "malloc_free": info.fordblks, "malloc_mmapped": info.hblkhd}


def _pymalloc_counters() -> dict:
    """Python's small-object allocator (pymalloc), which takes its arenas straight from mmap, so
    neither malloc counts them: bytes in its arenas, and bytes in blocks Python objects hold.
    sys._debugmallocstats() prints them on the C stderr, which is sent to a file meanwhile."""
    with tempfile.TemporaryFile() as capture:
        saved = os.dup(2)
        os.dup2(capture.fileno(), 2)
        try:
            sys._debugmallocstats()
        finally:
            os.dup2(saved, 2)
            os.close(saved)
        capture.seek(0)
        text = capture.read().decode(errors="replace")
    values = {}
    for line in text.splitlines():
        name, _, value = line.partition("=")
        if name.strip() in ("Total", "# bytes in allocated blocks") and name.strip() not in values:
            values[name.strip()] = int(value.strip().replace(",", ""))
    if len(values) < 2:  # pymalloc is not in use (PYTHONMALLOC=malloc, or tracemalloc wraps it)
        return {}
    return {"python_arenas": values["Total"], "python_in_blocks": values["# bytes in allocated blocks"]}


def _thread_stacks_rss() -> int:
    """Resident bytes of thread stacks: anonymous read-write mappings that start right where a
    no-access anonymous guard mapping ends, as glibc lays out every thread's stack (/proc/self/smaps)."""
    total, previous, is_stack = 0, None, False
    for line in Path("/proc/self/smaps").read_text().splitlines():
        fields = line.split()
        if not fields[0].endswith(":"):  # a mapping: range, permissions, offset, device, inode[, path]
            start, end = (int(part, 16) for part in fields[0].split("-"))
            mapping = (end, fields[1], len(fields) == 5)  # anonymous: no path
            is_stack = (previous is not None and previous == (start, "---p", True) and mapping[1:] == ("rw-p", True))
            previous = mapping
        elif is_stack and fields[0] == "Rss:":
            total += int(fields[1]) * 1024
    return total


def _native_counters() -> dict:
    out = _jemalloc_counters() or _glibc_counters()
    try:
        import sqlite3  # noqa: F401  (loads the library the bot uses)

        library = ctypes.CDLL("libsqlite3.so.0")
        library.sqlite3_memory_used.restype = ctypes.c_int64
        out["sqlite"] = library.sqlite3_memory_used()
    except (OSError, AttributeError):  # SQLite linked statically
        pass
    return out


def _child(report_dir: str, args: list[str]) -> None:
    """Run `manage.py <args>` in this process; on SIGUSR2 write report N (and snapshot N)."""
    import gc
    import tracemalloc

    frames = int(os.environ.get("QM_PROFILE_TRACEMALLOC", "0"))
    if frames:
        tracemalloc.start(frames)
    count = 0

    def report(signum, frame) -> None:
        nonlocal count
        count += 1
        gc.collect()
        status = dict(line.split(":", 1) for line in Path("/proc/self/status").read_text().splitlines() if ":" in line)
        row = {"rss": int(status["VmRSS"].split()[0]) * 1024, "rss_anon": int(status["RssAnon"].split()[0]) * 1024,
               "python_blocks": sys.getallocatedblocks(), **_native_counters(), **_pymalloc_counters(),
               "thread_stacks": _thread_stacks_rss()}
        if tracemalloc.is_tracing():
            row["python_traced"] = tracemalloc.get_traced_memory()[0]
            tracemalloc.take_snapshot().dump(f"{report_dir}/snapshot{count}")
        Path(f"{report_dir}/report{count}.tmp").write_text(json.dumps(row))
        os.replace(f"{report_dir}/report{count}.tmp", f"{report_dir}/report{count}.json")

    signal.signal(signal.SIGUSR2, report)
    sys.argv = ["manage.py", *args]
    os.chdir(ROOT)
    sys.path.insert(0, str(ROOT))
    import runpy

    runpy.run_path(str(ROOT / "manage.py"), run_name="__main__")


# --- the driver ----------------------------------------------------------------------------------

def _mib(value: int | None) -> str:
    return "-" if value is None else f"{value / 2**20:.2f}"


def run(symbols: int, seconds: float, samples: int, frames: int, out: Path = OUTPUT, jemalloc: bool = False,
        thread_caches: bool = False) -> str:
    import tracemalloc

    from bench import bench_scale as scale
    from bench.common import setup_django

    setup_django(sqlite_name="memory.sqlite3")
    names = [f"P{i}/USDT" for i in range(symbols)]
    sim, url = scale.simulator(names, 6.0)
    account = scale.make_account("memory", names, url)
    reports = tempfile.mkdtemp(prefix="qm-memory-")
    env = scale.child_env(bot=not thread_caches, QM_PROFILE_TRACEMALLOC=str(frames))
    if jemalloc:
        library = scale.jemalloc_library()
        if library is None:
            raise SystemExit("--jemalloc: libjemalloc.so.2 is not installed (apt-get install libjemalloc2)")
        env["LD_PRELOAD"] = library
    bot = subprocess.Popen(
        [sys.executable, "-m", "bench.profile_memory", "--child", reports, "runbot", "--account", account,
         "--instance-id", "memory", "--tick-interval", "1", "--status-interval", "3600"],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    output = bot.stdout
    assert output is not None  # stdout=PIPE
    started: set[str] = set()
    rows = []
    try:
        deadline = time.monotonic() + 180
        for line in output:
            if ": trading on " in line:
                started.add(line.split(":", 1)[0])
            if len(started) == symbols or time.monotonic() > deadline:
                break
        if len(started) < symbols:
            raise RuntimeError(f"only {len(started)} of {symbols} symbols started")
        # Keep reading the bot's output so that it never blocks on a full pipe.
        threading.Thread(target=lambda: [None for _ in output], daemon=True).start()
        time.sleep(30)
        t0 = time.monotonic()
        for n in range(1, samples + 1):
            if n > 1:
                time.sleep(max(0.0, t0 + (n - 1) * seconds / (samples - 1) - time.monotonic()))
            os.kill(bot.pid, signal.SIGUSR2)
            path = Path(reports) / f"report{n}.json"
            while not path.exists():
                if bot.poll() is not None:
                    raise RuntimeError("the bot exited")
                time.sleep(0.2)
            rows.append({"at_s": round(time.monotonic() - t0), **json.loads(path.read_text())})
            print(f"   {rows[-1]['at_s']} s: RSS {_mib(rows[-1]['rss'])} MiB", flush=True)
    finally:
        os.killpg(bot.pid, signal.SIGTERM)
        bot.wait(timeout=60)
        sim.stop()

    keys = ["rss", "rss_anon", "malloc_in_use", "malloc_free", "sqlite", "python_arenas", "python_in_blocks",
            "thread_stacks", "python_traced"]
    lines = [f"runbot, {symbols} symbols on the simulator, {seconds:g} s ({seconds / 6:g} simulated minutes), "
             f"tracemalloc {f'on ({frames} frames)' if frames else 'off'}, {allocator(jemalloc, thread_caches)}; "
             "MiB unless stated", "",
             "| at s | " + " | ".join(keys) + " | python blocks |", "|---" * (len(keys) + 2) + "|"]
    for row in rows:
        lines.append(f"| {row['at_s']} | " + " | ".join(_mib(row.get(k)) for k in keys) + f" | {row['python_blocks']} |")
    first, last = rows[1] if len(rows) > 2 else rows[0], rows[-1]
    lines += ["", f"growth from {first['at_s']} s to {last['at_s']} s: " + ", ".join(
        f"{k} {(last[k] - first[k]) / 2**20:+.2f}" for k in keys if k in first and k in last)]
    if frames:
        before = tracemalloc.Snapshot.load(f"{reports}/snapshot{rows.index(first) + 1}")
        after = tracemalloc.Snapshot.load(f"{reports}/snapshot{len(rows)}")
        lines += ["", "Python allocation sites that grew most over the same span:", ""]
        if frames == 1:
            lines += [f"    {stat}" for stat in after.compare_to(before, "lineno")[:15]]
        else:  # each site with the calls that led to it, innermost last
            for stat in after.compare_to(before, "traceback")[:10]:
                lines += [f"    {stat.size_diff / 1024:+.1f} KiB, {stat.count_diff:+d} blocks:",
                          *(f"        {line}" for line in stat.traceback.format(most_recent_first=False)), ""]
    text = "\n".join(lines) + "\n"
    out.write_text(text)
    return text


def allocator(jemalloc: bool, thread_caches: bool) -> str:
    if jemalloc:
        return "jemalloc"
    return "glibc malloc" + (" with its per-thread caches" if thread_caches else ", per-thread caches off")


def main() -> None:
    if len(sys.argv) > 2 and sys.argv[1] == "--child":
        _child(sys.argv[2], sys.argv[3:])
        return
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--symbols", type=int, default=20)
    parser.add_argument("--seconds", type=float, default=360.0)
    parser.add_argument("--samples", type=int, default=4)
    parser.add_argument("--no-tracemalloc", action="store_true")
    parser.add_argument("--frames", type=int, default=1,
                        help="frames of each allocation's traceback that tracemalloc keeps (default 1)")
    parser.add_argument("--jemalloc", action="store_true",
                        help="run the bot on jemalloc (LD_PRELOAD), as the compose file does")
    parser.add_argument("--thread-caches", action="store_true",
                        help="keep glibc's per-thread malloc caches, which `make run` turns off for the bot")
    parser.add_argument("--out", type=Path, default=OUTPUT)
    args = parser.parse_args()
    if args.symbols < 1 or args.seconds <= 0 or args.samples < 2 or args.frames < 1:
        parser.error("--symbols and --frames must be at least 1, --seconds positive and --samples at least 2")
    print(run(args.symbols, args.seconds, args.samples, 0 if args.no_tracemalloc else args.frames, args.out,
              args.jemalloc, args.thread_caches))


if __name__ == "__main__":
    main()

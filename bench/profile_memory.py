"""Where a running bot's memory goes, and what grows: `runbot` on the simulator, looked at from inside.

    python -m bench.profile_memory [--symbols 20] [--seconds 360] [--samples 4] [--no-tracemalloc] [--out FILE]

The bot runs as a real `manage.py runbot` process (SQLite, tick 1 s, one price step every 6 s, so
360 s is one simulated hour), started through this module so that it answers SIGUSR2 with a
report of its memory:

- RSS and its anonymous part (/proc), and glibc's malloc: bytes in use and bytes free in its heaps;
- SQLite's own allocations (sqlite3_memory_used), which glibc counts as in use;
- Python's allocated blocks, and with tracemalloc on, the bytes Python has allocated and a
  snapshot of where.

The first report comes after the warm-up (every symbol trading, 30 s more). Between the second
report and the last, the allocation sites that grew most are listed: a cache or a list that keeps
growing shows up there by file and line. tracemalloc roughly doubles the bot's CPU and adds its
own memory to RSS (its own bookkeeping shows up as malloc's free bytes), so RSS is compared only
between runs with the same setting. The output goes to stdout and to --out (default
bench/profiles/memory_python.txt; bench/profiles/memory_native.txt is a run with tracemalloc off).
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

class _MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in
                ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks", "keepcost")]


def _native_counters() -> dict:
    out: dict = {}
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.mallinfo2.restype = _MallInfo2
        info = libc.mallinfo2()
        out.update(malloc_in_use=info.uordblks, malloc_free=info.fordblks, malloc_mmapped=info.hblkhd)
    except (OSError, AttributeError):  # not glibc, or glibc before 2.33
        pass
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

    if os.environ.get("QM_PROFILE_TRACEMALLOC") == "1":
        tracemalloc.start(1)
    count = 0

    def report(signum, frame) -> None:
        nonlocal count
        count += 1
        gc.collect()
        status = dict(line.split(":", 1) for line in Path("/proc/self/status").read_text().splitlines() if ":" in line)
        row = {"rss": int(status["VmRSS"].split()[0]) * 1024, "rss_anon": int(status["RssAnon"].split()[0]) * 1024,
               "python_blocks": sys.getallocatedblocks(), **_native_counters()}
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


def run(symbols: int, seconds: float, samples: int, trace: bool, out: Path = OUTPUT) -> str:
    import tracemalloc

    from bench import bench_scale as scale
    from bench.common import setup_django

    setup_django(sqlite_name="memory.sqlite3")
    names = [f"P{i}/USDT" for i in range(symbols)]
    sim, url = scale.simulator(names, 6.0)
    account = scale.make_account("memory", names, url)
    reports = tempfile.mkdtemp(prefix="qm-memory-")
    env = scale.child_env(QM_PROFILE_TRACEMALLOC="1" if trace else "0")
    bot = subprocess.Popen(
        [sys.executable, "-m", "bench.profile_memory", "--child", reports, "runbot", "--account", account,
         "--instance-id", "memory", "--tick-interval", "1", "--status-interval", "3600"],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    started: set[str] = set()
    rows = []
    try:
        deadline = time.monotonic() + 180
        for line in bot.stdout:
            if ": trading on " in line:
                started.add(line.split(":", 1)[0])
            if len(started) == symbols or time.monotonic() > deadline:
                break
        if len(started) < symbols:
            raise RuntimeError(f"only {len(started)} of {symbols} symbols started")
        # Keep reading the bot's output so that it never blocks on a full pipe.
        threading.Thread(target=lambda: [None for _ in bot.stdout], daemon=True).start()
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

    keys = ["rss", "rss_anon", "malloc_in_use", "malloc_free", "sqlite", "python_traced"]
    lines = [f"runbot, {symbols} symbols on the simulator, {seconds:g} s ({seconds / 6:g} simulated minutes), "
             f"tracemalloc {'on' if trace else 'off'}; MiB unless stated", "",
             "| at s | " + " | ".join(keys) + " | python blocks |", "|---" * (len(keys) + 2) + "|"]
    for row in rows:
        lines.append(f"| {row['at_s']} | " + " | ".join(_mib(row.get(k)) for k in keys) + f" | {row['python_blocks']} |")
    first, last = rows[1] if len(rows) > 2 else rows[0], rows[-1]
    lines += ["", f"growth from {first['at_s']} s to {last['at_s']} s: " + ", ".join(
        f"{k} {(last[k] - first[k]) / 2**20:+.2f}" for k in keys if k in first and k in last)]
    if trace:
        before = tracemalloc.Snapshot.load(f"{reports}/snapshot{rows.index(first) + 1}")
        after = tracemalloc.Snapshot.load(f"{reports}/snapshot{len(rows)}")
        lines += ["", "Python allocation sites that grew most over the same span:", ""]
        lines += [f"    {stat}" for stat in after.compare_to(before, "lineno")[:15]]
    text = "\n".join(lines) + "\n"
    out.write_text(text)
    return text


def main() -> None:
    if len(sys.argv) > 2 and sys.argv[1] == "--child":
        _child(sys.argv[2], sys.argv[3:])
        return
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--symbols", type=int, default=20)
    parser.add_argument("--seconds", type=float, default=360.0)
    parser.add_argument("--samples", type=int, default=4)
    parser.add_argument("--no-tracemalloc", action="store_true")
    parser.add_argument("--out", type=Path, default=OUTPUT)
    args = parser.parse_args()
    if args.symbols < 1 or args.seconds <= 0 or args.samples < 2:
        parser.error("--symbols must be at least 1, --seconds positive and --samples at least 2")
    print(run(args.symbols, args.seconds, args.samples, not args.no_tracemalloc, args.out))


if __name__ == "__main__":
    main()

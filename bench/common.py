"""Shared helpers for benchmarks: robust statistics, JSON output, Django set-up."""
from __future__ import annotations

import json
import os
import platform
import statistics
import time
from pathlib import Path
from typing import Callable

OUT = Path(__file__).resolve().parent / "out"


def summarize(samples_s: list[float]) -> dict:
    """Median, p99 and spread (interquartile range) in microseconds."""
    ordered = sorted(samples_s)
    n = len(ordered)

    def pct(p: float) -> float:
        return ordered[min(n - 1, int(p * n))] * 1e6

    return {
        "n": n,
        "p50_us": round(statistics.median(ordered) * 1e6, 2),
        "p99_us": round(pct(0.99), 2),
        "iqr_us": round(pct(0.75) - pct(0.25), 2),
        "min_us": round(ordered[0] * 1e6, 2),
    }


def time_calls(fn: Callable[[], object], n: int, warmup: int = 20) -> list[float]:
    for _ in range(warmup):
        fn()
    samples = []
    for _ in range(n):
        started = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - started)
    return samples


def machine() -> dict:
    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
    }


def write_json(name: str, payload: dict) -> Path:
    OUT.mkdir(parents=True, exist_ok=True)
    path = OUT / f"{name}.json"
    path.write_text(json.dumps({"machine": machine(), **payload}, indent=2, default=str))
    return path


def setup_django(database_url: str | None = None, sqlite_name: str = "bench.sqlite3") -> None:
    """Django against a throwaway SQLite file bench/out/`sqlite_name` (or `database_url`, or an
    existing DATABASE_URL), migrated."""
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "quantmesh.settings")
    os.environ.setdefault("SECRET_KEY", "bench-only")
    os.environ.setdefault("QM_DEBUG", "0")  # production settings: no query log
    if database_url:
        os.environ["DATABASE_URL"] = database_url
    elif "DATABASE_URL" not in os.environ:
        OUT.mkdir(parents=True, exist_ok=True)
        path = OUT / sqlite_name
        for suffix in ("", "-wal", "-shm"):
            Path(f"{path}{suffix}").unlink(missing_ok=True)
        os.environ["DATABASE_URL"] = f"sqlite:///{path}"
    import logging

    import django
    from django.core.management import call_command

    django.setup()
    logging.getLogger("quantmesh").setLevel(logging.WARNING)
    call_command("migrate", verbosity=0)

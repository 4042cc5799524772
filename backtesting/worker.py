"""Backtests in worker processes, each on a throwaway SQLite database of its own, so a run can
never touch the operator's ledger and a sweep uses every core.

The parent migrates one template database; every run starts from a fresh copy of it. Workers
report progress through a queue and return the run's results (or its error) as plain data.
"""
from __future__ import annotations

import multiprocessing
import os
import shutil
import tempfile
import traceback
from collections.abc import Callable, Iterable
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path
from typing import Any

_db_path: Path | None = None
_template: Path | None = None


@dataclass
class Outcome:
    index: int
    results: dict[str, Any] | None
    error: str = ""


def _setup(settings_module: str, db_path: Path) -> None:
    os.environ["DJANGO_SETTINGS_MODULE"] = settings_module
    os.environ["DATABASE_URL"] = f"sqlite:///{db_path}"
    os.environ["QM_LOCK_BACKEND"] = "nop"
    import django

    django.setup()
    import logging

    from django.conf import settings
    from django.db.backends.signals import connection_created

    settings.DEBUG = False  # no query log: a long run would keep every statement in memory
    logging.getLogger("quantmesh").setLevel(logging.WARNING)  # a line per order is the report's job

    def fast(sender, connection, **kwargs) -> None:
        with connection.cursor() as cursor:  # a throwaway database: no fsync
            cursor.execute("PRAGMA synchronous=OFF")

    connection_created.connect(fast, weak=False)


def _migrate(settings_module: str, template: Path) -> None:
    _setup(settings_module, template)
    from django.core.management import call_command

    call_command("migrate", verbosity=0, interactive=False)


def _init(settings_module: str, template: Path, workdir: Path) -> None:
    global _db_path, _template
    _template = template
    _db_path = workdir / f"run-{os.getpid()}.sqlite3"
    shutil.copyfile(template, _db_path)
    _setup(settings_module, _db_path)


def _fresh_database() -> None:
    from django.db import connection

    assert _db_path is not None and _template is not None, "the worker is initialised first"
    connection.close()
    for suffix in ("-wal", "-shm"):
        Path(f"{_db_path}{suffix}").unlink(missing_ok=True)
    shutil.copyfile(_template, _db_path)


def _run_one(index: int, spec_data: dict[str, Any], checked, progress_queue) -> Outcome:
    from backtesting.driver import Spec, run

    try:
        _fresh_database()

        def report(p) -> None:
            if progress_queue is not None:
                progress_queue.put((index, p.candles, p.total, p.ticks, p.fills, str(p.price)))

        return Outcome(index, run(Spec.from_dict(spec_data), checked=checked, progress=report))
    except Exception as exc:  # the parent records the failure against this run
        detail = "".join(traceback.format_exception_only(type(exc), exc)).strip()
        if not isinstance(exc, ValueError):
            detail += "\n" + traceback.format_exc(limit=6)
        return Outcome(index, None, detail)


def run_all(specs: Iterable[dict[str, Any]], *, workers: int, settings_module: str, checked=None,
            on_progress: Callable[[int, int, int, int, int, str], None] | None = None,
            on_done: Callable[[Outcome], None] | None = None) -> list[Outcome]:
    """Run every spec (as `Spec.as_dict` gives it), `workers` at a time; outcomes in spec order.
    `checked`: the candle file's check (`klines.check`) when the specs share one, so no worker
    reads the whole file again."""
    specs = list(specs)
    context = multiprocessing.get_context("spawn")
    with tempfile.TemporaryDirectory(prefix="qm-backtest-") as tmp:
        workdir = Path(tmp)
        template = workdir / "template.sqlite3"
        migrate = context.Process(target=_migrate, args=(settings_module, template))
        migrate.start()
        migrate.join()
        if migrate.exitcode != 0:
            raise RuntimeError(f"could not create the backtest database (exit {migrate.exitcode})")
        with context.Manager() as manager:
            queue = manager.Queue() if on_progress is not None else None
            outcomes: dict[int, Outcome] = {}
            with ProcessPoolExecutor(max_workers=max(1, min(workers, len(specs))), mp_context=context,
                                     initializer=_init, initargs=(settings_module, template, workdir)) as pool:
                pending: set[Future] = {pool.submit(_run_one, i, spec, checked, queue) for i, spec in enumerate(specs)}
                while pending:
                    done, pending = wait(pending, timeout=0.5, return_when=FIRST_COMPLETED)
                    _drain(queue, on_progress)
                    for future in done:
                        outcome = future.result()
                        outcomes[outcome.index] = outcome
                        if on_done is not None:
                            on_done(outcome)
                _drain(queue, on_progress)
    return [outcomes[i] for i in range(len(specs))]


def _drain(queue, on_progress) -> None:
    if queue is None or on_progress is None:
        return
    while not queue.empty():
        on_progress(*queue.get_nowait())

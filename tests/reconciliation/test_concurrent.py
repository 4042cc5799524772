"""Two reconciles of one symbol at the same moment, in two real processes: `manage.py reconcile`
(cron) and a Celery worker. With the Redis lock one runs at a time and no fill is applied twice;
with the no-op lock (the control) the passes overlap, which shows the check can fail."""
import os
import signal
import sys
import uuid
from decimal import Decimal

import pytest

from reconciliation.models import ReconcileRun
from tests.procs import ROOT, child_env, manage, wait_for
from trading.models import Fill, Order

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow, pytest.mark.redis]
D = Decimal


@pytest.fixture
def worker(redis_url, tmp_path):
    """A real Celery worker on its own queue; yields (queue, env)."""
    import subprocess

    queue = f"qm-test-{uuid.uuid4().hex[:8]}"
    log = tmp_path / "worker.log"
    env = child_env(CELERY_BROKER_URL=redis_url, REDIS_URL=redis_url, QM_LOCK_BACKEND="redis")
    proc = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "quantmesh", "worker", "--pool=solo", "-Q", queue, "--without-gossip",
         "--without-mingle", "--without-heartbeat", "-l", "info"],
        cwd=ROOT, env=env, stdout=open(log, "wb"), stderr=subprocess.STDOUT, start_new_session=True,
    )
    wait_for(lambda: b"ready" in log.read_bytes(), timeout=60, what="celery worker ready", proc=proc, log_path=log)
    yield queue, env, log
    os.killpg(proc.pid, signal.SIGTERM)
    proc.wait(timeout=30)


def start_both(symbol, queue, env, backend, tmp_path):
    import subprocess

    call_env = {**env, "QM_LOCK_BACKEND": backend}
    cron = manage("reconcile", "--symbol", symbol.symbol, log_path=tmp_path / "cron.log", **{
        k: call_env[k] for k in ("CELERY_BROKER_URL", "REDIS_URL", "QM_LOCK_BACKEND")})
    subprocess.run(
        [sys.executable, "-m", "celery", "-A", "quantmesh", "call", "reconciliation.reconcile_symbol",
         "--args", f"[{symbol.pk}]", "--queue", queue],
        cwd=ROOT, env=call_env, check=True, capture_output=True, timeout=60,
    )
    return cron


def overlapping(runs):
    first, second = sorted(runs, key=lambda r: r.started_at)
    return second.started_at < first.finished_at


def prepare(sim, make_engine):
    engine = make_engine()
    engine.tick()
    sim.engine.set_price("BTC/USDT", D("59800"))  # a fill both reconcilers will find
    sim.set_latency(1500, path="/api/v3/openOrders")  # each pass takes at least 1.5 s


def test_cron_and_celery_reconcile_one_at_a_time(sim, make_engine, paper_symbol, worker, tmp_path):
    queue, env, log = worker
    prepare(sim, make_engine)
    cron = start_both(paper_symbol, queue, env, "redis", tmp_path)
    assert cron.wait(timeout=120) in (0, 1)
    wait_for(lambda: ReconcileRun.objects.filter(finished_at__isnull=False).count() == 2, timeout=90,
             what="both reconcile runs", log_path=log)
    runs = list(ReconcileRun.objects.all())
    assert {r.trigger for r in runs} == {"cron", "celery"}
    assert not overlapping(runs)
    order = Order.objects.get(level=-1, side="buy")
    assert Fill.objects.filter(order=order).count() == 1 and order.status == "filled"
    assert sorted(r.repaired for r in runs) == [0, 1]  # the first applied the fill, the second found it done


def test_control_with_the_noop_lock_the_passes_overlap(sim, make_engine, paper_symbol, worker, tmp_path, monkeypatch):
    queue, env, log = worker
    prepare(sim, make_engine)
    # The worker holds the Redis lock service; give the cron side the no-op lock and start it while the
    # worker's pass is inside its 1.5 s exchange call.
    cron = start_both(paper_symbol, queue, env, "nop", tmp_path)
    cron.wait(timeout=120)
    wait_for(lambda: ReconcileRun.objects.filter(finished_at__isnull=False).count() == 2, timeout=90,
             what="both reconcile runs", log_path=log)
    runs = list(ReconcileRun.objects.all())
    assert overlapping(runs)
    order = Order.objects.get(level=-1, side="buy")
    assert Fill.objects.filter(order=order).count() == 1  # the database still refuses a second copy

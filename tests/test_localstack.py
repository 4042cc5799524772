"""`make run`'s stack (`python -m quantmesh.localstack`) as real processes: the paper exchange, the
admin and the bot come up without Redis; the bot is started without glibc's per-thread malloc
caches; Ctrl-C stops all three and the stack exits 0."""
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from tests.procs import ROOT, child_env, wait_for

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def child_running(parent: int, command: str) -> int | None:
    """The pid of a child of `parent` whose command line has `command` in it."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue  # it ended meanwhile
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        if ppid == parent and command.encode() in cmdline:
            return int(entry.name)
    return None


@pytest.mark.skipif(not Path("/proc/self/environ").exists(), reason="reads the bot's environment from /proc")
def test_the_stack_trades_on_paper_without_thread_caches_and_stops_on_ctrl_c(tmp_path):
    log = tmp_path / "run.log"
    env = child_env(QM_DEBUG="1", QM_VAR_DIR=str(tmp_path), QM_LOCK_BACKEND="nop")
    for name in ("GLIBC_TUNABLES", "QM_PAPER_EXCHANGE_URL", "REDIS_URL"):
        env.pop(name, None)
    with open(log, "ab") as out:
        stack = subprocess.Popen(
            [sys.executable, "-m", "quantmesh.localstack", "--port", str(free_port()),
             "--exchange-port", str(free_port())],
            cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        wait_for(lambda: ": trading on " in log.read_text(errors="replace"), what="the bot trading",
                 proc=stack, log_path=log)
        bot = wait_for(lambda: child_running(stack.pid, "runbot"), what="the bot's process", proc=stack, log_path=log)
        environ = Path(f"/proc/{bot}/environ").read_bytes().split(b"\0")
        assert b"GLIBC_TUNABLES=glibc.malloc.tcache_count=0" in environ

        os.kill(stack.pid, signal.SIGINT)
        assert stack.wait(timeout=60) == 0, log.read_text(errors="replace")
        assert "stopped: exchange, admin and bot" in log.read_text(errors="replace")
    finally:
        if stack.poll() is None:  # the test failed with the stack up: it stops its children on SIGTERM
            stack.terminate()
            try:
                stack.wait(timeout=30)
            except subprocess.TimeoutExpired:
                stack.kill()

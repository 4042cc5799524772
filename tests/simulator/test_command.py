"""`manage.py simexchange` as a real process: banner, serving, SIGTERM, bad arguments."""
from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.simulator.conftest import Http

ROOT = Path(__file__).resolve().parents[2]


def manage(*args: str) -> subprocess.Popen[str]:
    env = dict(os.environ, DJANGO_SETTINGS_MODULE="tests.settings", PYTHONUNBUFFERED="1")
    return subprocess.Popen([sys.executable, "manage.py", "simexchange", *args], cwd=ROOT,
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def read_banner(process: subprocess.Popen[str]) -> list[str]:
    assert process.stdout is not None and process.stderr is not None  # manage() pipes both
    lines = []
    for line in process.stdout:
        lines.append(line.rstrip("\n"))
        if line.startswith("stop with"):
            return lines
    pytest.fail(f"no banner; stderr: {process.stderr.read()}")


def test_serves_until_sigterm(tmp_path):
    klines = tmp_path / "klines.csv"
    klines.write_text("open_time_ms,open,high,low,close,volume\n"
                      "60000,87129.2,87167.4,87124.8,87151.7,8.147\n")
    process = manage("--port", "0", "--seed", "3", "--symbols", "BTC/USDT,SOL/USDT",
                     "--klines", str(klines), "--api-key", "k1", "--api-secret", "s1")
    try:
        banner = read_banner(process)
        url = re.search(r"listening on (http://127\.0\.0\.1:\d+)", banner[0]).group(1)
        assert banner[1].startswith("symbols: BTC/USDT (BTCUSDT) 87151.70, SOL/USDT (SOLUSDT) 150")
        assert "api key: k1" in banner and "api secret: s1" in banner
        http = Http(url)
        status, _, body = http.control("GET", "/sim/state")
        assert (status, body["prices"]["BTCUSDT"]) == (200, "87151.70")
        status, _, body = http.signed("GET", "/api/v3/account", {}, key="k1", secret="s1")
        assert status == 200
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=10) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


@pytest.mark.parametrize("args, option", [
    (["--price", "abc,1"], "--price"),
    (["--port", "70000"], "--port"),
    (["--symbols", "BTCUSDT"], "--symbols"),
    (["--klines", "/nonexistent/klines.csv"], "--klines"),
])
def test_bad_arguments_name_the_option(args, option):
    process = manage(*args)
    _, stderr = process.communicate(timeout=30)
    assert process.returncode == 1
    assert f"CommandError: {option}:" in stderr

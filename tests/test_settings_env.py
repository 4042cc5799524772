"""Start-up configuration: bad environment values stop start-up with one line naming the
variable; production settings pass Django's deployment checks."""
import os
import subprocess
import sys
from pathlib import Path

import pytest

from quantmesh.config import SettingsError, parse_database_url

ROOT = Path(__file__).resolve().parent.parent


def run_manage(*args, **env):
    base = {k: v for k, v in os.environ.items() if not k.startswith(("QM_", "DATABASE_URL", "REDIS_URL", "SECRET_KEY"))}
    base.pop("DJANGO_SETTINGS_MODULE", None)
    base.update(env)
    return subprocess.run(
        [sys.executable, "manage.py", *args], cwd=ROOT, env=base, capture_output=True, text=True, timeout=120
    )


@pytest.mark.parametrize(
    "env, needle",
    [
        ({"DATABASE_URL": "oracle://x/y"}, "DATABASE_URL"),
        ({"DATABASE_URL": "postgres://host:notaport/db"}, "DATABASE_URL"),
        ({"DATABASE_URL": "postgres://localhost"}, "DATABASE_URL"),
        ({"QM_LOCK_BACKEND": "zookeeper"}, "QM_LOCK_BACKEND"),
        ({"QM_LIVE_TRADING": "maybe"}, "QM_LIVE_TRADING"),
        ({"REDIS_URL": "http://127.0.0.1:6379"}, "REDIS_URL"),
        ({"QM_LOCK_BACKEND": "redis"}, "REDIS_URL"),
        ({"QM_DEBUG": "0"}, "SECRET_KEY"),
    ],
)
def test_bad_setting_stops_start_up_with_one_line_naming_it(env, needle):
    env = {"SECRET_KEY": "k" * 60, **env} if needle != "SECRET_KEY" else env
    result = run_manage("check", **env)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert needle in lines[0] and lines[0].startswith("configuration error:")


def test_database_urls_parse_for_all_three_engines(tmp_path):
    pg = parse_database_url("postgres://qm:s%40cret@db.example:5433/quantmesh")
    assert (pg["ENGINE"], pg["NAME"], pg["USER"], pg["PASSWORD"], pg["HOST"], pg["PORT"]) == (
        "django.db.backends.postgresql", "quantmesh", "qm", "s@cret", "db.example", "5433",
    )
    my = parse_database_url("mysql://root@127.0.0.1:3306/test")
    assert my["ENGINE"] == "django.db.backends.mysql" and my["OPTIONS"]["charset"] == "utf8mb4"
    lite = parse_database_url("sqlite:///var/x.sqlite3", base_dir=tmp_path)
    assert lite["NAME"] == str(tmp_path / "var" / "x.sqlite3")
    assert parse_database_url("sqlite:////abs/x.sqlite3")["NAME"] == "/abs/x.sqlite3"
    with pytest.raises(SettingsError, match="DATABASE_URL"):
        parse_database_url("sqlite://")


def test_check_deploy_is_clean_with_production_environment(tmp_path):
    result = run_manage(
        "check", "--deploy", "--fail-level", "WARNING",
        SECRET_KEY="production-" + "x9Kq2" * 12,
        ALLOWED_HOSTS="quantmesh.example.com",
        DATABASE_URL=f"sqlite:///{tmp_path}/prod.sqlite3",
        QM_DEBUG="0",
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues" in result.stdout

"""Strict readers for settings that come from the environment.

Every reader names the variable in its error, so a bad value stops start-up with one
line that says what to fix (see `manage.py`, which prints `SettingsError` without a
traceback).
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from django.core.exceptions import ImproperlyConfigured

TRUE_WORDS = {"1", "true", "yes", "on"}
FALSE_WORDS = {"0", "false", "no", "off", ""}


class SettingsError(ImproperlyConfigured):
    """A setting from the environment is missing or malformed."""


def env_str(name: str, default: str = "") -> str:
    return os.environ.get(name, default).strip()


def env_bool(name: str, default: bool = False) -> bool:
    raw = os.environ.get(name)
    if raw is None:
        return default
    word = raw.strip().lower()
    if word in TRUE_WORDS:
        return True
    if word in FALSE_WORDS:
        return False
    raise SettingsError(f"{name}={raw!r} is not a boolean (use 1/0, true/false, yes/no, on/off)")


def env_int(name: str, default: int, *, minimum: int | None = None, maximum: int | None = None) -> int:
    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        value = int(raw.strip())
    except ValueError:
        raise SettingsError(f"{name}={raw!r} is not an integer") from None
    if minimum is not None and value < minimum:
        raise SettingsError(f"{name}={value} is below the minimum {minimum}")
    if maximum is not None and value > maximum:
        raise SettingsError(f"{name}={value} is above the maximum {maximum}")
    return value


def env_choice(name: str, default: str, choices: tuple[str, ...]) -> str:
    value = env_str(name, default).lower()
    if value not in choices:
        raise SettingsError(f"{name}={value!r} is not one of: {', '.join(choices)}")
    return value


def env_secret(name: str, default: str = "") -> str:
    """A secret from `NAME`, or from the file named by `NAME_FILE` (container secrets)."""
    path = os.environ.get(f"{name}_FILE")
    if path:
        try:
            return Path(path).read_text().strip()
        except OSError as exc:
            raise SettingsError(f"{name}_FILE={path!r} cannot be read: {exc.strerror}") from None
    return os.environ.get(name, default)


SQLITE_INIT = "PRAGMA cache_size=-64"  # KiB of page cache per connection
SQLITE_CACHED_STATEMENTS = 16


def parse_database_url(url: str, *, var: str = "DATABASE_URL", base_dir: Path | None = None) -> dict[str, Any]:
    """Turn `sqlite:///var/db.sqlite3`, `postgres://u:p@h:5432/db` or `mysql://u@h/db` into a
    Django DATABASES entry."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise SettingsError(f"{var} is not a valid URL: {exc}") from None
    scheme = parts.scheme.lower()
    options = {k: v[-1] for k, v in parse_qs(parts.query).items()}
    if scheme == "sqlite":
        # sqlite:///relative/path or sqlite:////absolute/path
        raw_path = unquote(parts.path)
        if not raw_path or raw_path == "/":
            raise SettingsError(f"{var}={url!r} names no database file (sqlite:///var/quantmesh.sqlite3)")
        path = Path(raw_path[1:])  # "/var/x.db" is relative, "//var/x.db" absolute
        if not path.is_absolute() and base_dir is not None:
            path = base_dir / path
        return {
            "ENGINE": "quantmesh.db.backends.sqlite3",
            "NAME": str(path),
            # Bounded per connection: runbot keeps one connection per symbol thread for its life,
            # and with SQLite's defaults (2 MB page cache, 128 prepared statements) each one
            # grows for an hour. The OS page cache still holds the file.
            "OPTIONS": {"timeout": 20, "transaction_mode": "IMMEDIATE", "init_command": SQLITE_INIT,
                        "cached_statements": SQLITE_CACHED_STATEMENTS},
            "TEST": {"NAME": str(path.with_name(f"test_{path.name}"))},
        }
    engines = {
        "postgres": "django.db.backends.postgresql",
        "postgresql": "django.db.backends.postgresql",
        "pgsql": "django.db.backends.postgresql",
        "mysql": "django.db.backends.mysql",
        "mariadb": "django.db.backends.mysql",
    }
    if scheme not in engines:
        raise SettingsError(f"{var} has unsupported scheme {scheme!r} (use sqlite, postgres or mysql)")
    name = unquote(parts.path.lstrip("/"))
    if not name:
        raise SettingsError(f"{var}={_redact(url)!r} names no database (…/DBNAME)")
    if not parts.hostname:
        raise SettingsError(f"{var}={_redact(url)!r} names no host")
    entry: dict[str, Any] = {
        "ENGINE": engines[scheme],
        "NAME": name,
        "USER": unquote(parts.username or ""),
        "PASSWORD": unquote(parts.password or ""),
        "HOST": parts.hostname,
        "PORT": str(port or ""),
        "CONN_MAX_AGE": int(options.pop("conn_max_age", "0")),
        "OPTIONS": {},
    }
    if engines[scheme].endswith("mysql"):
        entry["OPTIONS"] = {
            "charset": "utf8mb4",
            "isolation_level": "read committed",
            "init_command": "SET sql_mode='STRICT_TRANS_TABLES'",
        }
        entry["TEST"] = {"CHARSET": "utf8mb4", "COLLATION": "utf8mb4_unicode_ci"}
    else:
        entry["OPTIONS"] = {"application_name": options.pop("application_name", "quantmesh")}
    entry["OPTIONS"].update(options)
    return entry


def check_redis_url(url: str, *, var: str = "REDIS_URL") -> str:
    try:
        parts = urlsplit(url)
        _ = parts.port  # parses the port; raises ValueError when it is not a number
    except ValueError as exc:
        raise SettingsError(f"{var} is not a valid URL: {exc}") from None
    if parts.scheme not in {"redis", "rediss", "unix"}:
        raise SettingsError(f"{var}={_redact(url)!r} must start with redis://, rediss:// or unix://")
    if parts.scheme != "unix" and not parts.hostname:
        raise SettingsError(f"{var}={_redact(url)!r} names no host")
    return url


def _redact(url: str) -> str:
    parts = urlsplit(url)
    if parts.password:
        return url.replace(f":{parts.password}@", ":***@")
    return url

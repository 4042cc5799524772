"""QuantMesh settings. Everything that differs between machines comes from the environment;
see the settings table in README.md and docs/configuration.md."""
from __future__ import annotations

import os
import socket
from pathlib import Path

from notifications.config import NotifyConfig, parse_channels, parse_levels
from quantmesh.config import (
    SettingsError,
    check_redis_url,
    env_bool,
    env_choice,
    env_int,
    env_secret,
    env_str,
    parse_database_url,
)

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = Path(env_str("QM_VAR_DIR") or BASE_DIR / "var")

DEBUG = env_bool("QM_DEBUG", False)
SECRET_KEY = env_secret("SECRET_KEY")
if not SECRET_KEY:
    if not DEBUG:
        raise SettingsError("SECRET_KEY is not set (required unless QM_DEBUG=1)")
    SECRET_KEY = "insecure-development-key-only-used-with-QM_DEBUG"

ALLOWED_HOSTS = [h.strip() for h in env_str("ALLOWED_HOSTS", "127.0.0.1,localhost").split(",") if h.strip()]
CSRF_TRUSTED_ORIGINS = [o.strip() for o in env_str("CSRF_TRUSTED_ORIGINS").split(",") if o.strip()]

# --- trading -------------------------------------------------------------------------------------
QM_INSTANCE_ID = env_str("QM_INSTANCE_ID") or f"{socket.gethostname()}-{os.getpid()}"
if len(QM_INSTANCE_ID) > 64:
    raise SettingsError(f"QM_INSTANCE_ID is {len(QM_INSTANCE_ID)} characters long (at most 64)")
QM_LIVE_TRADING = env_bool("QM_LIVE_TRADING", False)
QM_LOCK_BACKEND = env_choice("QM_LOCK_BACKEND", "nop", ("nop", "redis"))
# Prefix of every lock key in Redis; instances that must exclude each other share it.
QM_LOCK_NAMESPACE = env_str("QM_LOCK_NAMESPACE", "quantmesh:lock:")
REDIS_URL = check_redis_url(env_str("REDIS_URL", "redis://127.0.0.1:6379/0"))
QM_PAPER_EXCHANGE_URL = env_str("QM_PAPER_EXCHANGE_URL")
# Without Redis, the percentage of an exchange's request and order limits this process may use
# (unset: 70 for runbot, 10 for any other process: the web admin, cron, Celery).
QM_RATE_SHARE = env_int("QM_RATE_SHARE", 0, minimum=0, maximum=100) or None
# When set, the web process's /metrics answers only requests with "Authorization: Bearer <token>".
QM_METRICS_TOKEN = env_secret("QM_METRICS_TOKEN")
QM_LOCK_EVENT_RETENTION_DAYS = env_int("QM_LOCK_EVENT_RETENTION_DAYS", 14, minimum=1)
# Multi-instance mode: how long a symbol lease lasts without renewal (renewed every third of it).
QM_LEASE_TTL_MS = env_int("QM_LEASE_TTL_MS", 10_000, minimum=300, maximum=600_000)
# How long a signed order request stays executable at the exchange (Binance recvWindow), and the
# margin added for clock offset before "not found" is taken to mean "never placed".
QM_RECV_WINDOW_MS = env_int("QM_RECV_WINDOW_MS", 5_000, minimum=100, maximum=60_000)
QM_CLOCK_MARGIN_MS = env_int("QM_CLOCK_MARGIN_MS", 2_000, minimum=0, maximum=60_000)
# Test-only: the fault-injection suite freezes an instance at this fault point (trading.faultpoints).
QM_TEST_PAUSE_AT = env_str("QM_TEST_PAUSE_AT")
if QM_LOCK_BACKEND == "redis" and not os.environ.get("REDIS_URL"):
    raise SettingsError("REDIS_URL is not set but QM_LOCK_BACKEND=redis needs it")
# Notifications (notifications.config): the channels, a minimum level per event family, pacing.
try:
    QM_NOTIFY_CONFIG = NotifyConfig(
        channels=parse_channels(env_secret("QM_NOTIFY_URLS")),
        levels=parse_levels(env_str("QM_NOTIFY_LEVELS")),
        trade_interval=env_int("QM_NOTIFY_TRADE_INTERVAL", 900, minimum=0),
        dedup_seconds=env_int("QM_NOTIFY_DEDUP_SECONDS", 600, minimum=0),
        retries=env_int("QM_NOTIFY_RETRIES", 3, minimum=0, maximum=10),
        backoff=env_int("QM_NOTIFY_BACKOFF_MS", 2000, minimum=0, maximum=600_000) / 1000,
        queue_size=env_int("QM_NOTIFY_QUEUE", 1000, minimum=1),
        summary_hour=env_int("QM_NOTIFY_SUMMARY_HOUR", 0, minimum=0, maximum=23),
        stream_down_seconds=env_int("QM_NOTIFY_STREAM_DOWN_SECONDS", 120, minimum=1),
        error_streak=env_int("QM_NOTIFY_ERROR_STREAK", 5, minimum=1),
    )
except ValueError as exc:
    raise SettingsError(str(exc)) from None

# --- Django --------------------------------------------------------------------------------------
INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django_prometheus",
    "trading",
    "locking",
    "reconciliation",
    "backtesting",
    "notifications",
]

MIDDLEWARE = [
    "django_prometheus.middleware.PrometheusBeforeMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_prometheus.middleware.PrometheusAfterMiddleware",
]

ROOT_URLCONF = "quantmesh.urls"
WSGI_APPLICATION = "quantmesh.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

DATABASES = {
    "default": parse_database_url(
        env_str("DATABASE_URL") or f"sqlite:///{VAR_DIR / 'quantmesh.sqlite3'}", base_dir=BASE_DIR
    )
}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
if env_bool("QM_REDIS_CACHE", False):
    CACHES["default"] = {"BACKEND": "django_redis.cache.RedisCache", "LOCATION": REDIS_URL}

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = VAR_DIR / "static"

# --- security (production unless QM_DEBUG) -------------------------------------------------------
SESSION_COOKIE_HTTPONLY = True
CSRF_COOKIE_HTTPONLY = True
X_FRAME_OPTIONS = "DENY"
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
if not DEBUG:
    SECURE_SSL_REDIRECT = env_bool("QM_SSL_REDIRECT", True)
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True
    SECURE_HSTS_SECONDS = env_int("QM_HSTS_SECONDS", 31536000, minimum=0)
    SECURE_HSTS_INCLUDE_SUBDOMAINS = True
    SECURE_HSTS_PRELOAD = True
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")

# --- celery --------------------------------------------------------------------------------------
CELERY_BROKER_URL = env_str("CELERY_BROKER_URL") or REDIS_URL
CELERY_RESULT_BACKEND = None
CELERY_TASK_ACKS_LATE = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TIMEZONE = "UTC"

# --- logging -------------------------------------------------------------------------------------
LOG_LEVEL = env_choice("QM_LOG_LEVEL", "info", ("debug", "info", "warning", "error")).upper()
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)-7s %(name)s %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "loggers": {
        "quantmesh": {"handlers": ["console"], "level": LOG_LEVEL, "propagate": False},
        "django": {"handlers": ["console"], "level": "WARNING"},
    },
}

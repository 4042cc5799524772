"""The process's lock service, built from Django settings."""
from __future__ import annotations

from typing import Any

from django.conf import settings

from locking.base import LockService
from locking.factory import build_lock_service


def lock_service_from_settings(*, instance_id: str | None = None) -> LockService:
    """`QM_LOCK_BACKEND` with `REDIS_URL`. A Redis backend that cannot start raises (the caller
    turns it into a start-up error); it never falls back to the no-op lock."""
    options: dict[str, Any] = {"instance_id": instance_id or settings.QM_INSTANCE_ID}
    if settings.QM_LOCK_BACKEND == "redis":
        options["namespace"] = settings.QM_LOCK_NAMESPACE
    return build_lock_service(settings.QM_LOCK_BACKEND, settings.REDIS_URL, **options)

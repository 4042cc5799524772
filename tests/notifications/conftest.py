from __future__ import annotations

import pytest

import notifications
from notifications.config import NotifyConfig, parse_channels
from tests.notifications.receivers import Smtp, Webhook


@pytest.fixture
def webhook():
    hook = Webhook().start()
    yield hook
    hook.stop()


@pytest.fixture
def smtp():
    server = Smtp().start()
    yield server
    server.stop()


@pytest.fixture
def install_hub():
    """Install a hub for this process with the given URLs (and config fields); removed after."""
    def install(*urls: str, **fields):
        fields.setdefault("retries", 0)
        fields.setdefault("backoff", 0.05)
        return notifications.install(NotifyConfig(channels=parse_channels(" ".join(urls)), **fields),
                                     instance_id="test-instance")
    yield install
    notifications.uninstall()

import pytest

from tests.services import require_redis

pytest_plugins = ["tests.paper"]


@pytest.fixture
def redis_url() -> str:
    """URL of a reachable Redis (test database), or skip/fail per QM_REQUIRE_SERVICES."""
    return require_redis()


def pytest_terminal_summary(terminalreporter):
    """Print the nemesis runs' summary table (when any ran), so CI logs show it."""
    import sys

    nemesis = sys.modules.get("tests.ha.nemesis")
    if nemesis is None or not nemesis.SUMMARY:
        return
    terminalreporter.write_sep("=", "nemesis summary")
    terminalreporter.write_line(nemesis.HEADER)
    for row in nemesis.SUMMARY:
        terminalreporter.write_line(row)


@pytest.fixture(autouse=True)
def _fresh_exchange_sessions():
    """Each test starts with no exchange session: no markets, budget or gate of an earlier one."""
    from trading.exchange.session import forget_sessions

    forget_sessions()
    yield
    forget_sessions()

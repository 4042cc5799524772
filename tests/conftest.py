import pytest

from tests.services import require_redis

pytest_plugins = ["tests.paper"]


@pytest.fixture
def redis_url() -> str:
    """URL of a reachable Redis (test database), or skip/fail per QM_REQUIRE_SERVICES."""
    return require_redis()

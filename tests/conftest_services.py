"""The rule for tests that need a real server already running here (Redis, PostgreSQL).

Locally such tests skip, with the command that starts the server, when it can't be reached.
Where the servers are part of the contract (CI=true, or CLEARBG_REQUIRE_SERVICES=1) they fail
instead, so a CI run can never turn green by skipping them. Import from test modules:
`from tests.conftest_services import require_service`.
"""

from __future__ import annotations

import os
from collections.abc import Callable

import pytest

REDIS_START = (
    'redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" '
    "--appendonly no --dir /var/lib/redis --logfile /var/log/redis/ci.log"
)


def services_required(env: dict[str, str] | None = None) -> bool:
    env = dict(os.environ) if env is None else env
    return env.get("CI", "").strip().lower() == "true" or env.get(
        "CLEARBG_REQUIRE_SERVICES", ""
    ).strip() == "1"


def require_service(name: str, probe: Callable[[], object], how_to_start: str) -> None:
    """Run `probe`; if it raises, skip (locally) or fail (CI) with how to start `name`."""
    try:
        probe()
    except Exception as exc:  # any failure to reach it means "not running here"
        message = f"{name} is not reachable ({type(exc).__name__}: {exc}). Start it with: {how_to_start}"
        if services_required():
            pytest.fail(message + "  [required: CI=true or CLEARBG_REQUIRE_SERVICES=1]", pytrace=False)
        pytest.skip(message)

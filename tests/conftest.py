"""Fixtures any suite may use: a fresh PostgreSQL schema on the machine's real server.

It follows tests/conftest_services.py: skipped locally when PostgreSQL is down, a failure under
CI=true or CLEARBG_REQUIRE_SERVICES=1.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from urllib.parse import quote, urlsplit

import pytest

from tests.conftest_services import require_service

# The machine's PostgreSQL: trust authentication, database `test`.
POSTGRES_URL = os.environ.get("CLEARBG_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")
POSTGRES_START = "pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start"


@pytest.fixture(scope="session")
def postgres_schema() -> Iterator[Callable[[], str]]:
    """Returns a function that creates a fresh, empty schema in the test database and gives
    the CLEARBG_DATABASE_URL whose search_path is that schema (so servers started with it use
    it too). Every schema made this session is dropped at the end."""
    import psycopg

    require_service(
        f"PostgreSQL at {POSTGRES_URL}", lambda: psycopg.connect(POSTGRES_URL, connect_timeout=3).close(), POSTGRES_START
    )
    session = f"clearbg_test_{uuid.uuid4().hex[:10]}"
    made: list[str] = []
    separator = "&" if urlsplit(POSTGRES_URL).query else "?"

    def make() -> str:
        name = f"{session}_{len(made)}"
        with psycopg.connect(POSTGRES_URL, autocommit=True) as conn:
            conn.execute(f'CREATE SCHEMA "{name}"')
        made.append(name)
        return f"{POSTGRES_URL}{separator}options={quote(f'-csearch_path={name}')}"

    try:
        yield make
    finally:
        if made:
            with psycopg.connect(POSTGRES_URL, autocommit=True) as conn:
                for name in made:
                    conn.execute(f'DROP SCHEMA IF EXISTS "{name}" CASCADE')

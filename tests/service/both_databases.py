"""Fixtures for the modules whose tests run on SQLite and on the real PostgreSQL alike: import
`database_url` and `storage` into the module (they override conftest.py's SQLite-only
`storage` there, and so its `account` too)."""

from __future__ import annotations

import pytest

from service.storage import open_storage


@pytest.fixture(params=["sqlite", "postgres"])
def database_url(request, tmp_path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/clearbg.db"
    return request.getfixturevalue("postgres_schema")()


@pytest.fixture
def storage(database_url):
    store = open_storage(database_url)
    yield store
    store.close()

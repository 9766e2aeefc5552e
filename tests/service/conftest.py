"""Fixtures for the service's unit tests: a temp SQLite database, a fake engine with the real
engine's methods, and an in-process grpc.aio server."""

from __future__ import annotations

import asyncio
import io
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal

import pytest

from service.config import Settings
from service.storage.sqlite import SqliteStorage
from service_fakes import DEV_KEY, FakeEngine


@pytest.fixture
def settings() -> Settings:
    return Settings(grpc_port=0, engine_workers=2, max_queue=64)


@pytest.fixture
def storage(tmp_path) -> Iterator[SqliteStorage]:
    store = SqliteStorage(tmp_path / "nested" / "clearbg.db")
    yield store
    store.close()


@pytest.fixture
def account(storage):
    """The documented development balance, with DEV_KEY."""
    account = storage.create_account(
        "test", subscription=Decimal(45), payg=Decimal(5), enterprise=Decimal(0), free_calls=50
    )
    key = storage.add_api_key(account.id, DEV_KEY)
    return account, key


@pytest.fixture
def engine() -> FakeEngine:
    return FakeEngine()


@dataclass
class RunningServer:
    port: int
    server: object
    loop: asyncio.AbstractEventLoop


@pytest.fixture
def grpc_server(settings, storage, engine) -> Iterator[RunningServer]:
    """The real `service.server.Server` on a free port, in its own event-loop thread."""
    from service.server import Server

    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()

    def run(coro):
        return asyncio.run_coroutine_threadsafe(coro, loop).result(timeout=30)

    async def build() -> Server:  # grpc.aio objects belong to the loop they are made on
        return Server(settings, storage=storage, engine_factory=lambda: engine)

    server = run(build())
    port = run(server.start(out=io.StringIO()))
    run(server.load_engine())
    try:
        yield RunningServer(port, server, loop)
    finally:
        run(server.stop(0))
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=10)
        loop.close()

"""The real stack every SDK's end-to-end tests share (tests/e2e/conftest.py start_stack: real Envoy,
real gRPC server, real model, temp SQLite; image_url may fetch from 127.0.0.1), and accounts made
in it through the storage API as an operator would. Each test makes accounts of its own."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.clients.sdk_tools import Accounts
from tests.e2e.api_calls import account_maker
from tests.e2e.conftest import RunningStack, start_stack


@pytest.fixture(scope="session")
def sdk_stack(tmp_path_factory) -> Iterator[RunningStack]:
    with start_stack(tmp_path_factory.mktemp("sdk-e2e")) as running:
        yield running


@pytest.fixture(scope="session")
def accounts(sdk_stack) -> Iterator[Accounts]:
    from service.storage import open_storage

    storage = open_storage(sdk_stack.database_url)
    try:
        with account_maker(sdk_stack.database_url) as make:
            yield Accounts(make, storage)
    finally:
        storage.close()

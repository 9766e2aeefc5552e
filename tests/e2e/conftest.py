"""The real stack for end-to-end tests: `python -m service` (real model, temp SQLite, fixed
development key) and the real Envoy, started by the launcher's own Stack on free ports."""

from __future__ import annotations

import contextlib
import os
import pathlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import pytest

from service.launcher import LaunchError, Stack
from service.launcher import free_port as launcher_free_port  # the fixture below is named free_port

QUALITY = pathlib.Path(__file__).resolve().parents[2].parent / "shared" / "quality"
DEV_KEY = "e2e-dev-key-0123456789"
START_TIMEOUT_S = 180.0


@pytest.fixture(scope="session")
def free_port() -> Callable[[], int]:
    """Returns a function giving a port nothing listens on right now."""
    return launcher_free_port


@dataclass(frozen=True)
class RunningStack:
    rest_url: str
    grpc_address: str
    api_key: str
    log: pathlib.Path
    database_url: str = ""
    server_pids: tuple[int, ...] = ()
    # Each server's /metrics and Envoy's /stats/prometheus (service/metrics.py).
    metrics_urls: tuple[str, ...] = ()
    envoy_metrics_url: str | None = None


@contextlib.contextmanager
def start_stack(workdir: pathlib.Path, **settings: str) -> Iterator[RunningStack]:
    """A stack of its own in `workdir` (fresh database, so the development account has the
    documented balance until charged); `settings` are extra CLEARBG_* variables. Stopped on
    exit, even when a test (or the start) fails."""
    log = workdir / "stack.log"
    env = dict(os.environ)
    database_url = f"sqlite:///{workdir / 'clearbg.db'}"
    env.update(
        CLEARBG_DATABASE_URL=database_url,
        CLEARBG_DEV_API_KEY=DEV_KEY,
        # image_url tests serve their images from 127.0.0.1, refused without this allow-list.
        CLEARBG_URL_FETCH_ALLOW_HOSTS="127.0.0.1",
        PYTHONUNBUFFERED="1",
        **settings,
    )
    with open(log, "w") as out:
        running = Stack(http_port=launcher_free_port(), grpc_port=launcher_free_port(), env=env, out=out)
        try:
            running.start()
            running.wait_healthy(START_TIMEOUT_S)
        except LaunchError as exc:
            running.stop()
            out.flush()
            pytest.fail(f"the stack did not start: {exc}\n--- stack output ---\n{log.read_text()[-4000:]}")
        try:
            pids = tuple(child.process.pid for child in running.children if child.name != "envoy")
            yield RunningStack(
                running.rest_url, running.grpc_address, DEV_KEY, log, database_url, pids,
                running.metrics_urls, running.envoy_metrics_url,
            )
        finally:
            running.stop()


@pytest.fixture(scope="session")
def stack(tmp_path_factory) -> Iterator[RunningStack]:
    """Started once per session and shared by the e2e tests."""
    with start_stack(tmp_path_factory.mktemp("e2e")) as running:
        yield running


@pytest.fixture(scope="session")
def quality() -> pathlib.Path:
    """The research photos beside the repository (read in place, never copied)."""
    if not (QUALITY / "grabcut50" / "images").is_dir():
        pytest.fail(f"{QUALITY} is missing: the e2e tests read real photos from ../shared/quality")
    return QUALITY


@pytest.fixture(scope="session")
def new_account(stack) -> Iterator[Callable[..., str]]:
    """Accounts in the shared stack (made through the storage API, as an operator would), so
    suites that run many calls leave the development account's documented balance to the
    tests that check it. Keyword arguments: the balances and the rate limit."""
    from api_calls import account_maker

    with account_maker(stack.database_url) as make:
        yield make


@pytest.fixture(scope="session")
def stack_factory(tmp_path_factory) -> Callable[..., contextlib.AbstractContextManager[RunningStack]]:
    """For tests that need other settings: `with stack_factory(CLEARBG_X="1") as running:`
    starts a stack of their own (a few seconds: the model loads once more)."""
    return lambda **settings: start_stack(tmp_path_factory.mktemp("e2e-own"), **settings)

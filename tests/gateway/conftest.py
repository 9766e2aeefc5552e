"""The real Envoy, with gateway/envoy.yaml rendered for free ports, in front of the in-test
backend of gateway_backend.py (one Envoy per module)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from gateway_backend import SERVING, Backend, Gateway, Seen, free_port, start_envoy, wait_for_status


@pytest.fixture(scope="module")
def gateway(tmp_path_factory) -> Iterator[Gateway]:
    """Envoy in front of a healthy in-test backend."""
    backend = Backend()
    envoy = None
    try:
        grpc_port = backend.start()
        envoy, url = start_envoy(grpc_port, tmp_path_factory)
        wait_for_status(url + "/healthz", 200)
        yield Gateway(url, backend)
    finally:
        if envoy is not None:
            envoy.stop()
        backend.stop()


@pytest.fixture
def backend(gateway) -> Iterator[Backend]:
    """The gateway's backend, fresh for each test and reset to healthy after it."""
    gateway.backend.seen = Seen()
    yield gateway.backend
    gateway.backend.removebg = None
    gateway.backend.account = None
    gateway.backend.set_health(SERVING)
    wait_for_status(gateway.url + "/healthz", 200)


@pytest.fixture(scope="module")
def gateway_without_backend(tmp_path_factory) -> Iterator[Gateway]:
    """Envoy whose gRPC port has nothing listening."""
    envoy, url = start_envoy(free_port(), tmp_path_factory)
    try:
        wait_for_status(url + "/healthz", 503)
        yield Gateway(url, None)
    finally:
        envoy.stop()

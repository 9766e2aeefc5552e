"""A small in-test grpc.aio backend for the gateway tests, and helpers around it.

A unit test of the gateway configuration: the backend implements the generated servicers
with behaviour each test sets (record the request, answer with given metadata and body, or
fail with the error convention of service/errors.py), so what is tested is Envoy's part.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import grpc
import requests
from google.api import httpbody_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_health.v1.health import aio as health_aio

from clearbg.v1 import account_pb2_grpc, removebg_pb2, removebg_pb2_grpc
from service.launcher import Child, check_descriptor, envoy_command, find_envoy, free_port, render_envoy_config

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


Handler = Callable[[object, grpc.aio.ServicerContext], Awaitable[object]]


@dataclass
class Seen:
    """What the backend received on its last call."""

    request: object = None
    metadata: dict[str, str] = field(default_factory=dict)


class Backend:
    """A grpc.aio server on its own event-loop thread; tests set `handler` per call kind."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.seen = Seen()
        self.removebg: Handler | None = None
        self.account: Handler | None = None
        self.health = health_aio.HealthServicer()
        self.port = 0
        self.server: grpc.aio.Server | None = None

    def run(self, coro):
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(10)

    def start(self) -> int:
        self.thread.start()
        return self.run(self._start())

    async def _start(self) -> int:
        backend = self

        async def record(request, context) -> None:
            backend.seen = Seen(request, {k: v for k, v in context.invocation_metadata() if isinstance(v, str)})

        class RemoveBg(removebg_pb2_grpc.RemoveBgServiceServicer):
            async def RemoveBackgroundHttp(self, request, context):
                await record(request, context)
                return await backend.removebg(request, context)

        class Account(account_pb2_grpc.AccountServiceServicer):
            async def GetAccountHttp(self, request, context):
                await record(request, context)
                return await backend.account(request, context)

        self.server = grpc.aio.server(
            options=[("grpc.max_receive_message_length", 64 << 20), ("grpc.max_send_message_length", 200 << 20)]
        )
        removebg_pb2_grpc.add_RemoveBgServiceServicer_to_server(RemoveBg(), self.server)
        account_pb2_grpc.add_AccountServiceServicer_to_server(Account(), self.server)
        health_pb2_grpc.add_HealthServicer_to_server(self.health, self.server)
        await self.health.set("", SERVING)
        self.port = self.server.add_insecure_port("127.0.0.1:0")
        await self.server.start()
        return self.port

    def set_health(self, status: int) -> None:
        self.run(self.health.set("", status))

    def stop(self) -> None:
        if not self.thread.is_alive():  # stopped already, or never started
            return
        if self.server is not None:
            self.run(self.server.stop(0))
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)


def start_envoy(grpc_port: int, tmp_path_factory) -> tuple[Child, str]:
    """The real Envoy on gateway/envoy.yaml, rendered for a free HTTP port and `grpc_port`."""
    http_port = free_port()
    config = tmp_path_factory.mktemp("envoy") / "envoy.yaml"
    config.write_text(render_envoy_config(http_port, grpc_port, descriptor=check_descriptor()))
    child = Child.start("envoy", envoy_command(find_envoy(), config, "error"), {}, None)
    return child, f"http://127.0.0.1:{http_port}"


# A deadline for getting ready, not a speed check: Envoy's start took over 15 s on two cores with
# a benchmark beside the four test workers (42 gateway tests errored).
def wait_for_status(url: str, status: int, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            last = requests.get(url, timeout=2).status_code
        except requests.ConnectionError:
            last = None
        if last == status:
            return
        time.sleep(0.1)
    raise AssertionError(f"{url} answered {last}, not {status}, within {timeout} s")


@dataclass
class Gateway:
    url: str
    backend: Backend | None


def http_body(data: bytes, content_type: str) -> removebg_pb2.RemoveBackgroundHttpResponse:
    return removebg_pb2.RemoveBackgroundHttpResponse(body=httpbody_pb2.HttpBody(content_type=content_type, data=data))

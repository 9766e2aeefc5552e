"""The grpc.aio server: both services, health, reflection, graceful shutdown.

Health stays NOT_SERVING until the engine is loaded and warmed (in a thread, so the server
answers health checks meanwhile), then SERVING for "" and each service.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import signal
import sys
import threading
import time
from collections.abc import Callable
from typing import TextIO

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_health.v1.health import aio as health_aio
from grpc_reflection.v1alpha import reflection

from clearbg.v1 import account_pb2, account_pb2_grpc, admin_pb2_grpc, dashboard_pb2_grpc, removebg_pb2, removebg_pb2_grpc
from service import metrics
from service.admin.servicer import SERVICE_NAME as ADMIN_SERVICE
from service.admin.servicer import AdminServicer
from service.bootstrap import ensure_dev_account
from service.dashboard.service import Dashboard
from service.dashboard.servicer import SERVICE_NAME as DASHBOARD_SERVICE
from service.dashboard.servicer import DashboardServicer
from service.config import Settings
from service.limits import RateLimits, limiter_from_url
from service.logging import get_logger
from service.removal import EngineLike, RemovalService
from service.servicers import AccountServicer, RemoveBgServicer
from service.storage import Storage, open_storage

log = get_logger(__name__)

# Uploads up to the file cap plus base64 and multipart overhead; gRPC's 4 MiB default would
# turn a big upload into RESOURCE_EXHAUSTED, which the gateway shows as a false 429.
MAX_MESSAGE_BYTES = 64 * 1024 * 1024

SERVICE_NAMES = (
    removebg_pb2.DESCRIPTOR.services_by_name["RemoveBgService"].full_name,
    account_pb2.DESCRIPTOR.services_by_name["AccountService"].full_name,
)
# How long the further inference lanes wait for a health checker to have seen SERVING (the
# gateway checks twice a second); without a gateway they open after this.
LANES_AFTER_SERVING_S = 2.0


async def _in_daemon_thread(fn):
    """fn() on a daemon thread: unlike asyncio.to_thread's pool, which the process waits for at
    exit, work nobody needs any more (lanes still opening at Ctrl-C: seconds) never holds up a
    stop."""
    loop = asyncio.get_running_loop()
    done = loop.create_future()

    def work() -> None:
        try:
            result = fn()
        except BaseException as exc:  # noqa: BLE001 - handed to the awaiting task
            loop.call_soon_threadsafe(lambda: done.done() or done.set_exception(exc))
        else:
            loop.call_soon_threadsafe(lambda: done.done() or done.set_result(result))

    threading.Thread(target=work, name="open-lanes", daemon=True).start()
    return await done


class ObservedHealth(health_aio.HealthServicer):
    """The standard health service, noting once a checker (the gateway) has been told SERVING."""

    def __init__(self) -> None:
        super().__init__()
        self.seen_serving = asyncio.Event()

    async def Check(self, request, context):
        response = await super().Check(request, context)
        if response is not None and response.status == health_pb2.HealthCheckResponse.SERVING:
            self.seen_serving.set()
        return response


def default_engine(settings: Settings) -> EngineLike:
    """The engine as configured: as many inferences at once as engine workers (engine/models/lanes)."""
    from engine.pipeline import Engine  # heavy (onnxruntime); imported only when serving

    return Engine.from_config(settings.engine_config())


class PortUnavailable(RuntimeError):
    """The gRPC port cannot be bound (another process holds it, or it is not permitted)."""


class Server:
    """Construct it inside the running event loop: grpc.aio objects belong to that loop."""

    def __init__(
        self,
        settings: Settings,
        storage: Storage | None = None,
        engine_factory: Callable[[], EngineLike] | None = None,
    ):
        self.settings = settings
        self.storage = storage or open_storage(settings.database_url)
        self.engine_factory = engine_factory or functools.partial(default_engine, settings)
        limits = RateLimits(
            limiter_from_url(settings.redis_url), settings.preview_ip_limit,
            fail_open=settings.rate_limit_on_redis_down == "open",
        )
        self.removal = RemovalService(self.storage, None, settings, limits)
        self.health = ObservedHealth()
        self._lanes: asyncio.Task | None = None
        self._sweeper: asyncio.Task | None = None
        max_message = max(MAX_MESSAGE_BYTES, 3 * settings.max_file_bytes)
        self.grpc = grpc.aio.server(
            options=[
                ("grpc.max_receive_message_length", max_message),
                ("grpc.max_send_message_length", max_message),
                # A port another process holds is an error at start, not a port whose connections
                # the two share (gRPC sets SO_REUSEPORT by default).
                ("grpc.so_reuseport", 0),
            ]
        )
        removebg_pb2_grpc.add_RemoveBgServiceServicer_to_server(RemoveBgServicer(self.removal), self.grpc)
        account_pb2_grpc.add_AccountServiceServicer_to_server(AccountServicer(self.removal), self.grpc)
        health_pb2_grpc.add_HealthServicer_to_server(self.health, self.grpc)
        dashboard = DashboardServicer(Dashboard(self.storage, settings, self.removal))  # the web dashboard's calls
        dashboard_pb2_grpc.add_DashboardServiceServicer_to_server(dashboard, self.grpc)
        admin = ()
        if settings.admin_token:  # the operator's AdminService only when a token guards it
            admin_pb2_grpc.add_AdminServiceServicer_to_server(AdminServicer(self.storage, settings.admin_token), self.grpc)
            admin = (ADMIN_SERVICE,)
        reflection.enable_server_reflection(
            (*SERVICE_NAMES, DASHBOARD_SERVICE, *admin, health_pb2.DESCRIPTOR.services_by_name["Health"].full_name, reflection.SERVICE_NAME),
            self.grpc,
        )
        self.port = 0

    async def _set_health(self, status: int) -> None:
        for name in ("", *SERVICE_NAMES):
            await self.health.set(name, status)

    async def start(self, out: TextIO = sys.stdout) -> int:
        """Binds and starts serving (NOT_SERVING), then loads the engine; returns the port."""
        # The port first (bound, not yet serving): a held one stops the start before the
        # database sees a development account or a heartbeat.
        address = f"{self.settings.grpc_host}:{self.settings.grpc_port}"
        try:
            self.port = self.grpc.add_insecure_port(address)
        except RuntimeError:  # grpc's message points at its debug logs, not at the port
            self.port = 0
        if self.port == 0:
            raise PortUnavailable(f"cannot listen on {address}: the port is in use or not permitted")
        ensure_dev_account(self.storage, self.settings.dev_api_key, out)
        # Alive before the first call can hold a reservation; then beats and sweeps in the background.
        self.removal.reservations.beat()
        self._sweeper = asyncio.create_task(self.removal.reservations.run())
        await self._set_health(health_pb2.HealthCheckResponse.NOT_SERVING)
        await self.grpc.start()
        log.info("listening", host=self.settings.grpc_host, port=self.port)
        return self.port

    async def load_engine(self) -> None:
        engine, warm_up_s = await asyncio.to_thread(self._load_engine)
        # Until calls are measured, admission expects each to take what the warm-up took (an
        # inference and the edge loops; a session's first run is up to twice a later one).
        self.removal.admission.times.seed(warm_up_s)
        self.removal.engine = engine
        model = self.settings.model_path.name if self.settings.model_path else self.settings.model
        described = engine.describe()
        metrics.record_model(model, **described)
        metrics.watch_matte_cache(engine.matte_cache_counts)
        await self._set_health(health_pb2.HealthCheckResponse.SERVING)
        log.info("serving", **described)  # which way the net runs here, said once at start
        # The further inference lanes open while the first requests are served (engine/models/lanes.py).
        self._lanes = asyncio.create_task(self._open_lanes(engine))

    async def _open_lanes(self, engine: EngineLike) -> None:
        """Setting up a session holds the GIL (~1.4 s on 2 cores, in onnxruntime): nothing else in
        this process runs meanwhile, health checks included. So the lanes open once a checker (the
        gateway) has seen SERVING, and the gateway's first healthy answer comes before that stall."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.health.seen_serving.wait(), LANES_AFTER_SERVING_S)
        opened = await _in_daemon_thread(engine.open_lanes)
        log.info("inference_lanes_open", lanes=1 + opened)

    def _load_engine(self) -> tuple[EngineLike, float]:
        engine = self.engine_factory()
        started = time.monotonic()
        engine.warm_up()
        return engine, time.monotonic() - started

    async def stop(self, grace: float | None = None) -> None:
        """Health NOT_SERVING first (the gateway stops sending), calls still waiting for the
        engine refused (503 `shutting_down`, their credit given back), calls in the engine given
        up to `grace` seconds to finish and be answered; then the server stops."""
        grace = self.settings.shutdown_grace_s if grace is None else grace
        if self._lanes is not None:  # a lane being set up finishes in its thread, unused
            self._lanes.cancel()
        await self.health.enter_graceful_shutdown()
        self.removal.admission.close()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.removal.admission.drained(), grace)
        # What is left (an account call, an answer on its way) gets a moment; grpc.aio's own
        # grace would otherwise wait it out in full while the gateway holds its connection.
        await self.grpc.stop(min(grace, 1.0))
        if self._sweeper is not None:
            self._sweeper.cancel()
            await asyncio.to_thread(self.removal.reservations.retire)
        self.removal.shutdown()
        await self.removal.limits.aclose()
        self.storage.close()
        log.info("stopped")


async def serve(settings: Settings) -> None:
    server = Server(settings)
    try:
        await server.start()
    except PortUnavailable as exc:
        log.error("grpc_port_unavailable", host=settings.grpc_host, port=settings.grpc_port, error=str(exc))
        await server.stop(0)
        raise SystemExit(1) from None
    try:
        stop_metrics, metrics_port = metrics.serve(settings.metrics_host, settings.metrics_port)
    except OSError as exc:
        log.error("metrics_port_unavailable", host=settings.metrics_host, port=settings.metrics_port, error=str(exc))
        await server.stop(0)
        raise SystemExit(1) from None
    log.info("metrics_listening", url=f"http://{settings.metrics_host}:{metrics_port}/metrics")
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()

    def on_signal() -> None:
        if stop.is_set():  # the second Ctrl-C or SIGTERM: no more waiting
            log.warning("stopping_now")
            os._exit(130)
        stop.set()

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, on_signal)
    loading = asyncio.create_task(server.load_engine())
    waiter = asyncio.create_task(stop.wait())
    done, _ = await asyncio.wait({loading, waiter}, return_when=asyncio.FIRST_COMPLETED)
    if loading in done and loading.exception() is not None:
        log.error("engine_failed", exc_info=loading.exception())
        await server.stop(0)
        raise SystemExit(1)
    await waiter
    log.info("shutting_down")
    loading.cancel()
    await server.stop()
    stop_metrics()

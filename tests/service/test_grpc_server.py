"""The real grpc.aio server in-process (fake engine): both RPCs through the generated stubs,
error trailers, health, reflection, big streamed uploads."""

import asyncio
import hashlib
import io
import json
import os
import socket
import subprocess
import sys
import time
from decimal import Decimal

import grpc
import pytest
import requests
from google.api import httpbody_pb2
from google.rpc import error_details_pb2, status_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from PIL import Image

from clearbg.v1 import account_pb2, account_pb2_grpc, removebg_pb2, removebg_pb2_grpc
from service_fakes import DEV_KEY, png_bytes
from service.errors import ApiError
from service.server import LANES_AFTER_SERVING_S

CHUNK = 512 * 1024


@pytest.fixture
def channel(grpc_server, account):
    with grpc.insecure_channel(
        f"127.0.0.1:{grpc_server.port}",
        options=[("grpc.max_send_message_length", 64 << 20), ("grpc.max_receive_message_length", 64 << 20)],
    ) as ch:
        yield ch


def http_request(content_type: str, data: bytes):
    return removebg_pb2.RemoveBackgroundHttpRequest(body=httpbody_pb2.HttpBody(content_type=content_type, data=data))


def multipart(**data):
    """A multipart/form-data body as `requests` (the documented Python sample) sends it."""
    parts = {k: ("upload.png", v) if isinstance(v, bytes) else (None, v) for k, v in data.items()}
    prepared = requests.Request("POST", "http://x", files=parts).prepare()
    return http_request(prepared.headers["Content-Type"], prepared.body)


def error_of(excinfo) -> tuple[int, dict]:
    trailers = dict(excinfo.value.trailing_metadata())
    return int(trailers["x-http-status"]), json.loads(trailers["x-error-body"])


def noise_png(min_bytes: int) -> bytes:
    """An incompressible PNG of at least `min_bytes` (random pixels, no compression)."""
    side = int((min_bytes / 3) ** 0.5) + 16
    image = Image.frombytes("RGB", (side, side), os.urandom(side * side * 3))
    out = io.BytesIO()
    image.save(out, "PNG", compress_level=0)
    return out.getvalue()


def test_http_removal_sends_headers_as_initial_metadata(channel, storage, account):
    stub = removebg_pb2_grpc.RemoveBgServiceStub(channel)
    response, call = stub.RemoveBackgroundHttp.with_call(
        multipart(image_file=png_bytes(300, 200), size="auto", format="jpg"),
        metadata=[("x-api-key", DEV_KEY), ("x-request-id", "abc-123")],
    )
    assert response.body.data == b"fake-result:jpg"
    headers = dict(call.initial_metadata())
    assert (headers["x-width"], headers["x-height"]) == ("300", "200")
    assert headers["x-credits-charged"] == "1" and headers["x-credits-remaining"] == "49"
    assert storage.ledger(account[0].id)[0].request_id == "abc-123"


def test_http_json_accept(channel):
    stub = removebg_pb2_grpc.RemoveBgServiceStub(channel)
    body = json.dumps({"image_file_b64": __import__("base64").b64encode(png_bytes(20, 20)).decode(), "size": "preview"})
    response, call = stub.RemoveBackgroundHttp.with_call(
        http_request("application/json", body.encode()),
        metadata=[("x-api-key", DEV_KEY), ("accept", "application/json")],
    )
    assert response.body.content_type == "application/json"
    assert "result_b64" in json.loads(response.body.data)["data"]
    assert dict(call.initial_metadata())["x-credits-charged"] == "0"


@pytest.mark.parametrize(
    "request_, key, status, code, grpc_code",
    [
        (multipart(image_file=png_bytes(8, 8)), None, 401, "missing_api_key", grpc.StatusCode.UNAUTHENTICATED),
        (multipart(image_file=png_bytes(8, 8)), "cbg_nope", 401, "invalid_api_key", grpc.StatusCode.UNAUTHENTICATED),
        (multipart(size="hd"), DEV_KEY, 400, "missing_source", grpc.StatusCode.INVALID_ARGUMENT),
        (multipart(image_file=b"GIF89a garbage"), DEV_KEY, 400, "invalid_file_type", grpc.StatusCode.INVALID_ARGUMENT),
        (http_request("text/plain", b"x"), DEV_KEY, 400, "unsupported_content_type", grpc.StatusCode.INVALID_ARGUMENT),
    ],
)
def test_http_errors_are_trailers_only(channel, request_, key, status, code, grpc_code):
    stub = removebg_pb2_grpc.RemoveBgServiceStub(channel)
    metadata = [("x-api-key", key)] if key else []
    with pytest.raises(grpc.RpcError) as excinfo:
        stub.RemoveBackgroundHttp(request_, metadata=metadata)
    assert excinfo.value.code() == grpc_code
    assert not excinfo.value.initial_metadata()
    got_status, body = error_of(excinfo)
    assert got_status == status
    [error] = body["errors"]
    assert error["code"] == code and error["title"] and error["detail"] == excinfo.value.details()


def test_unexpected_failure_is_a_generic_500_and_free(channel, engine, storage, account):
    engine.fail_with = RuntimeError("secret internal path /opt/model.onnx")
    stub = removebg_pb2_grpc.RemoveBgServiceStub(channel)
    with pytest.raises(grpc.RpcError) as excinfo:
        stub.RemoveBackgroundHttp(multipart(image_file=png_bytes(8, 8)), metadata=[("x-api-key", DEV_KEY)])
    assert excinfo.value.code() == grpc.StatusCode.INTERNAL
    status, body = error_of(excinfo)
    assert status == 500 and body["errors"][0]["code"] == "internal_error"
    assert "secret" not in json.dumps(body) and "secret" not in excinfo.value.details()
    assert storage.get_account(account[0].id).total == Decimal(50)


def test_big_unary_upload_is_not_a_false_429(channel, engine):
    image = noise_png(10 << 20)
    stub = removebg_pb2_grpc.RemoveBgServiceStub(channel)
    response = stub.RemoveBackgroundHttp(multipart(image_file=image, size="preview"), metadata=[("x-api-key", DEV_KEY)])
    assert response.body.data.startswith(b"fake-result")
    assert engine.calls[-1][0] == image


def stream(options, image: bytes, chunk: int = CHUNK):
    yield removebg_pb2.RemoveBackgroundRequest(options=options)
    for start in range(0, len(image), chunk):
        yield removebg_pb2.RemoveBackgroundRequest(image_chunk=image[start : start + chunk])


def test_streamed_10mb_image(channel, engine, storage, account):
    image = noise_png(10 << 20)
    assert len(image) >= 10 << 20
    stub = removebg_pb2_grpc.RemoveBgServiceStub(channel)
    options = removebg_pb2.RemoveBackgroundOptions(size=removebg_pb2.SIZE_HD, format=removebg_pb2.OUTPUT_FORMAT_WEBP)
    response = stub.RemoveBackground(stream(options, image), metadata=[("x-api-key", DEV_KEY)])
    received, used = engine.calls[-1]
    assert hashlib.sha256(received).digest() == hashlib.sha256(image).digest()
    assert used.max_output_pixels == 4_000_000 and used.output_format == "webp"
    assert response.width * response.height <= 4_000_000
    assert (response.credits_charged, response.credits_remaining) == ("1", "49")
    assert response.foreground.top == 1 and response.foreground_type != 0
    assert response.type_label in ("person", "product", "animal", "car", "other")


def rich_status(excinfo) -> status_pb2.Status:
    """The google.rpc.Status the server sent in grpc-status-details-bin."""
    trailers = dict(excinfo.value.trailing_metadata())
    status = status_pb2.Status.FromString(trailers["grpc-status-details-bin"])
    assert status.code == excinfo.value.code().value[0] and status.message == excinfo.value.details()
    return status


def details_of(status: status_pb2.Status) -> dict[str, object]:
    found = {}
    for detail in status.details:
        for kind in (error_details_pb2.ErrorInfo, error_details_pb2.BadRequest, error_details_pb2.RetryInfo):
            if detail.Is(kind.DESCRIPTOR):
                message = kind()
                detail.Unpack(message)
                found[kind.__name__] = message
    return found


@pytest.mark.parametrize(
    "options, field, code",
    [
        (removebg_pb2.RemoveBackgroundOptions(scale_percent=5), "scale_percent", "invalid_scale"),
        (removebg_pb2.RemoveBackgroundOptions(roi=removebg_pb2.Region(x1=removebg_pb2.Length(percent=-10))),
         "roi.x1.percent", "invalid_roi"),
        (removebg_pb2.RemoveBackgroundOptions(shadow_opacity=150, add_shadow=True), "shadow_opacity", "invalid_shadow_opacity"),
    ],
)
def test_a_typed_value_out_of_range_is_invalid_argument_naming_the_field_and_free(
    channel, engine, storage, account, options, field, code
):
    stub = removebg_pb2_grpc.RemoveBgServiceStub(channel)
    with pytest.raises(grpc.RpcError) as excinfo:
        stub.RemoveBackground(stream(options, png_bytes(8, 8)), metadata=[("x-api-key", DEV_KEY)])
    assert excinfo.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    details = details_of(rich_status(excinfo))
    [violation] = details["BadRequest"].field_violations
    assert violation.field == field and violation.description == excinfo.value.details()
    assert (details["ErrorInfo"].reason, details["ErrorInfo"].domain) == (code, "clearbg.ai")
    status, body = error_of(excinfo)  # the REST door's status and body, as for every error
    assert status == 400 and body["errors"][0]["code"] == code
    assert engine.calls == [] and storage.get_account(account[0].id).total == Decimal(50)


def test_errors_without_a_field_carry_error_info(channel):
    stub = removebg_pb2_grpc.RemoveBgServiceStub(channel)
    with pytest.raises(grpc.RpcError) as excinfo:
        stub.RemoveBackground(stream(removebg_pb2.RemoveBackgroundOptions(), b""), metadata=[("x-api-key", "cbg_nope")])
    details = details_of(rich_status(excinfo))
    assert details["ErrorInfo"].reason == "invalid_api_key" and "BadRequest" not in details


def test_retry_after_becomes_retry_info():
    error = ApiError(503, "overloaded", "busy", headers=[("retry-after", "7")])
    details = details_of(status_pb2.Status.FromString(error.status_details()))
    assert details["RetryInfo"].retry_delay.seconds == 7 and details["ErrorInfo"].metadata["http_status"] == "503"


def test_stream_over_the_cap_is_refused(channel, grpc_server, engine):
    limit = grpc_server.server.settings.max_file_bytes
    stub = removebg_pb2_grpc.RemoveBgServiceStub(channel)
    with pytest.raises(grpc.RpcError) as excinfo:
        stub.RemoveBackground(stream(removebg_pb2.RemoveBackgroundOptions(), b"\0" * (limit + 1), chunk=4 << 20),
                              metadata=[("x-api-key", DEV_KEY)])
    status, body = error_of(excinfo)
    assert status == 400 and body["errors"][0]["code"] == "file_too_large"
    assert engine.calls == []


def test_stream_must_start_with_options(channel):
    stub = removebg_pb2_grpc.RemoveBgServiceStub(channel)
    bad = iter([removebg_pb2.RemoveBackgroundRequest(image_chunk=b"x")])
    with pytest.raises(grpc.RpcError) as excinfo:
        stub.RemoveBackground(bad, metadata=[("x-api-key", DEV_KEY)])
    assert error_of(excinfo)[1]["errors"][0]["code"] == "invalid_stream"


def test_get_account_has_the_documented_shape(channel):
    stub = account_pb2_grpc.AccountServiceStub(channel)
    response = stub.GetAccount(account_pb2.GetAccountRequest(), metadata=[("x-api-key", DEV_KEY)])
    credits = response.data.attributes.credits
    assert (credits.total, credits.subscription, credits.payg, credits.enterprise) == ("50", "45", "5", "0")
    assert response.data.attributes.api.free_calls == 50
    assert response.data.attributes.api.sizes == "all"
    with pytest.raises(grpc.RpcError) as excinfo:
        stub.GetAccount(account_pb2.GetAccountRequest(), metadata=[("x-api-key", "cbg_nope")])
    assert error_of(excinfo)[0] == 401


def test_the_rest_account_document_is_written_exactly(channel, storage, account):
    stub = account_pb2_grpc.AccountServiceStub(channel)
    response = stub.GetAccountHttp(account_pb2.GetAccountHttpRequest(), metadata=[("x-api-key", DEV_KEY)])
    assert response.body.content_type == "application/json"
    assert response.body.data == (
        b'{"data":{"attributes":{"credits":{"total":50,"subscription":45,"payg":5,"enterprise":0},'
        b'"api":{"free_calls":50,"sizes":"all"}}}}'
    )
    # Decimals as the ledger keeps them, as JSON numbers (no double rounding on the way).
    storage.add_credits(account[0].id, "t", subscription=Decimal("0.000001"), payg=Decimal("123456789.25"),
                        enterprise=Decimal(0))
    response = stub.GetAccountHttp(account_pb2.GetAccountHttpRequest(), metadata=[("x-api-key", DEV_KEY)])
    document = json.loads(response.body.data, parse_float=Decimal)
    assert document["data"]["attributes"]["credits"] == {
        "total": Decimal("123456839.250001"), "subscription": Decimal("45.000001"), "payg": Decimal("123456794.25"),
        "enterprise": 0,
    }
    with pytest.raises(grpc.RpcError) as excinfo:
        stub.GetAccountHttp(account_pb2.GetAccountHttpRequest(), metadata=[])
    assert error_of(excinfo)[0] == 401


def test_health_reports_serving_once_the_engine_is_warm(channel, engine):
    stub = health_pb2_grpc.HealthStub(channel)
    assert engine.warmed
    # The further inference lanes wait for a checker to have seen SERVING: setting one up stalls
    # the whole process, and the gateway's first healthy answer must not wait for that.
    assert not engine.lanes_opened
    for name in ("", "clearbg.v1.RemoveBgService", "clearbg.v1.AccountService"):
        assert stub.Check(health_pb2.HealthCheckRequest(service=name)).status == health_pb2.HealthCheckResponse.SERVING
    deadline = time.monotonic() + LANES_AFTER_SERVING_S / 2  # sooner than they would open unasked
    while not engine.lanes_opened:
        assert time.monotonic() < deadline, "the server did not open the engine's further lanes once seen serving"
        time.sleep(0.01)


def test_reflection_lists_the_services(channel):
    from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

    stub = reflection_pb2_grpc.ServerReflectionStub(channel)
    [answer] = stub.ServerReflectionInfo(iter([reflection_pb2.ServerReflectionRequest(list_services="")]))
    names = {s.name for s in answer.list_services_response.service}
    assert {"clearbg.v1.RemoveBgService", "clearbg.v1.AccountService", "grpc.health.v1.Health"} <= names


def test_logs_carry_the_request_id_but_never_the_key_or_internals(channel, engine):
    import structlog

    from service import logging as service_logging

    buffer = io.StringIO()
    service_logging.configure(json=True, stream=buffer)
    try:
        stub = removebg_pb2_grpc.RemoveBgServiceStub(channel)
        stub.RemoveBackgroundHttp(multipart(image_file=png_bytes(8, 8)), metadata=[("x-api-key", DEV_KEY), ("x-request-id", "log-1")])
        engine.fail_with = RuntimeError("boom-internal")
        with pytest.raises(grpc.RpcError):
            stub.RemoveBackgroundHttp(multipart(image_file=png_bytes(8, 8)), metadata=[("x-api-key", DEV_KEY), ("x-request-id", "log-2")])
    finally:
        structlog.reset_defaults()
    lines = [json.loads(line) for line in buffer.getvalue().splitlines()]
    assert any(line["event"] == "removed" and line["request_id"] == "log-1" for line in lines)
    [failure] = [line for line in lines if line["event"] == "unexpected_error"]
    assert failure["request_id"] == "log-2" and "boom-internal" in failure["exception"]
    assert DEV_KEY not in buffer.getvalue()


def test_shutdown_finishes_calls_in_the_engine_and_refuses_the_waiting_ones(grpc_server, engine, storage, account):
    """SIGTERM's path: health NOT_SERVING at once, the call in the engine answered, the one
    waiting behind it refused with 503 shutting_down and not charged, new calls refused."""
    import asyncio
    import threading
    from concurrent.futures import ThreadPoolExecutor

    started, release = threading.Event(), threading.Event()
    real_remove = engine.remove

    def slow_remove(data, options):
        started.set()
        release.wait(10)
        return real_remove(data, options)

    engine.remove = slow_remove
    grpc_server.server.removal.admission.workers = 1  # one in the engine, the next one waits
    address = f"127.0.0.1:{grpc_server.port}"

    def call(size: str):
        with grpc.insecure_channel(address) as ch:
            stub = removebg_pb2_grpc.RemoveBgServiceStub(ch)
            return stub.RemoveBackgroundHttp.with_call(
                multipart(image_file=png_bytes(32, 32), size=size), metadata=[("x-api-key", DEV_KEY)], timeout=20)

    with ThreadPoolExecutor(max_workers=2) as pool:
        running = pool.submit(call, "hd")
        assert started.wait(10)
        waiting = pool.submit(call, "medium")
        time.sleep(0.3)
        stopping = asyncio.run_coroutine_threadsafe(grpc_server.server.stop(5.0), grpc_server.loop)
        time.sleep(0.3)
        with grpc.insecure_channel(address) as ch:  # health says so while the call finishes
            status = health_pb2_grpc.HealthStub(ch).Check(health_pb2.HealthCheckRequest(service="")).status
        assert status == health_pb2.HealthCheckResponse.NOT_SERVING
        with pytest.raises(grpc.RpcError) as refused:
            waiting.result(10)
        release.set()
        _, done = running.result(10)
        stopping.result(10)
    status_code, body = error_of(refused)
    assert (status_code, body["errors"][0]["code"]) == (503, "shutting_down")
    assert dict(done.initial_metadata())["x-credits-charged"] == "1"
    assert storage.get_account(account[0].id).total == Decimal(49)  # only the finished call paid


def test_the_container_health_probe_follows_the_health_service(grpc_server):
    """deploy/Dockerfile's HEALTHCHECK (service.healthprobe): serving once the engine is warm,
    not when nothing answers."""
    from service.healthprobe import serving

    assert serving(f"127.0.0.1:{grpc_server.port}") is True
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        closed = sock.getsockname()[1]
    assert serving(f"127.0.0.1:{closed}", timeout_s=1.0) is False


def test_a_server_heartbeats_from_its_start_and_retires_on_stop(settings, storage, engine):
    """Crash-safe credits need every live server to be seen alive: a heartbeat row before the
    first call, gone after a clean stop (so anything it still held is swept at once)."""
    from service.server import Server

    async def lifecycle():
        server = Server(settings, storage=storage, engine_factory=lambda: engine)
        await server.start(out=io.StringIO())
        owner = server.removal.reservations.owner
        with storage._read() as db:
            alive = db.execute("SELECT count(*) FROM server_instances WHERE owner = ?", (owner,)).fetchone()[0]
        await server.stop(0)
        with storage._read() as db:
            left = db.execute("SELECT count(*) FROM server_instances WHERE owner = ?", (owner,)).fetchone()[0]
        return alive, left

    assert asyncio.run(lifecycle()) == (1, 0)


def test_a_port_another_process_holds_is_an_error_at_start(settings, storage, engine, tmp_path):
    """Not a port whose connections two processes share: a stack whose REST and gRPC ports came
    out the same once ran with Envoy answering half of the server's calls."""
    from dataclasses import replace

    from service.server import Server

    with socket.socket() as holder:  # as Envoy and gRPC bind by default: SO_REUSEPORT
        holder.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]

        async def start() -> None:
            server = Server(replace(settings, grpc_host="127.0.0.1", grpc_port=port), storage=storage,
                            engine_factory=lambda: engine)
            try:
                await server.start(out=io.StringIO())
            finally:
                await server.stop(0)

        with pytest.raises(RuntimeError, match=f"cannot listen on 127.0.0.1:{port}: the port is in use"):
            asyncio.run(start())

        # `python -m service` says so in its log and exits 1, without a traceback.
        env = dict(os.environ, CLEARBG_GRPC_PORT=str(port), CLEARBG_METRICS_PORT="0",
                   CLEARBG_DATABASE_URL=f"sqlite:///{tmp_path / 'port.db'}")
        run = subprocess.run([sys.executable, "-m", "service"], env=env, capture_output=True, text=True, timeout=120)
    output = run.stdout + run.stderr
    assert run.returncode == 1, output
    assert "grpc_port_unavailable" in output and f"cannot listen on 127.0.0.1:{port}" in output
    assert "Traceback" not in output

"""gRPC servicers: read metadata, call the use case, turn its answer or error into gRPC."""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import dataclasses
import time
from collections.abc import AsyncIterator, Iterator

import grpc
from google.api import annotations_pb2, httpbody_pb2

from clearbg.v1 import account_pb2, account_pb2_grpc, common_pb2, dashboard_pb2, removebg_pb2, removebg_pb2_grpc
from service import metrics, params
from service.account_view import account_json, typed_account
from service.credits import format_credits
from service.errors import ApiError, abort, bad_request, database_unavailable, internal_error
from service.limits import client_ip
from service.logging import get_logger, request_scope
from service.removal import RemovalService
from service.rest_request import parse_body
from service.storage import StorageUnavailable
from service.typed_options import TYPE_ENUMS, typed_request

log = get_logger(__name__)


def _routes() -> dict[str, str]:
    """Each method's name as the metrics show it: its REST route ("POST /v1.0/removebg") where
    the gateway transcodes one, else its gRPC path (the typed API)."""
    routes = {}
    for module in (removebg_pb2, account_pb2, dashboard_pb2):
        for service in module.DESCRIPTOR.services_by_name.values():
            for method in service.methods:
                options = method.GetOptions()
                if options.HasExtension(annotations_pb2.http):
                    rule = options.Extensions[annotations_pb2.http]
                    verb = rule.WhichOneof("pattern")
                    routes[method.name] = f"{verb.upper()} {getattr(rule, verb)}"
                else:
                    routes[method.name] = f"/{service.full_name}/{method.name}"
    return routes


ROUTES = _routes()


@dataclasses.dataclass
class _Answering:
    """The call being answered, until it is recorded (once) in the metrics."""

    route: str
    started: float = dataclasses.field(default_factory=time.monotonic)
    recorded: bool = False


_CALL: contextvars.ContextVar[_Answering | None] = contextvars.ContextVar("call", default=None)
# A call whose caller went away before the answer (nginx's "client closed request").
CANCELLED = (499, "cancelled")


def _metadata(context: grpc.aio.ServicerContext) -> dict[str, str]:
    return {key: value for key, value in (context.invocation_metadata() or ()) if isinstance(value, str)}


def _record(status: int, code: str) -> None:
    """The current call's outcome in the metrics, once: before its answer leaves (an error is
    sent by `abort` itself), so whoever has the answer can already see it counted."""
    call = _CALL.get()
    if call is not None and not call.recorded:
        call.recorded = True
        metrics.record_call(call.route, status, code, time.monotonic() - call.started)


@contextlib.contextmanager
def _call(context: grpc.aio.ServicerContext, method: str) -> Iterator[tuple[dict[str, str], str]]:
    """Reads the metadata once and binds the request id to every log line of the call; records
    the call in the metrics however it ends (`_fail` records the errors it sends)."""
    metadata = _metadata(context)
    token = _CALL.set(_Answering(ROUTES.get(method, method)))
    try:
        with request_scope(metadata.get("x-request-id"), method=method) as request_id:
            yield metadata, request_id
        _record(200, "")
    except asyncio.CancelledError:
        _record(*CANCELLED)
        raise
    except BaseException:
        _record(500, "internal_error")  # anything that escaped _fail (nothing should)
        raise
    finally:
        _CALL.reset(token)


async def _fail(context: grpc.aio.ServicerContext, exc: BaseException) -> None:
    if isinstance(exc, StorageUnavailable):
        log.warning("database_unavailable", error=str(exc))
        exc = database_unavailable()
    if isinstance(exc, ApiError):
        log.info("request_failed", status=exc.status, code=exc.code)
        _record(exc.status, exc.code)
        await abort(context, exc)
    log.error("unexpected_error", exc_info=exc)
    error = internal_error()
    _record(error.status, error.code)
    await abort(context, error)


class RemoveBgServicer(removebg_pb2_grpc.RemoveBgServiceServicer):
    def __init__(self, removal: RemovalService):
        self.removal = removal

    async def RemoveBackgroundHttp(self, request, context):
        with _call(context, "RemoveBackgroundHttp") as (metadata, request_id):
            try:
                fields = parse_body(request.body.content_type, request.body.data)
                delivery = await self.removal.remove(
                    metadata.get("x-api-key"),
                    request_id,
                    fields,
                    accept_json="application/json" in metadata.get("accept", "").lower(),
                    client_ip=client_ip(metadata.get("x-clearbg-client-ip"), context.peer()),
                    idempotency_key=metadata.get("idempotency-key"),
                )
            except Exception as exc:  # noqa: BLE001 - every error leaves as an API error
                await _fail(context, exc)
            await context.send_initial_metadata(delivery.headers)
            return removebg_pb2.RemoveBackgroundHttpResponse(
                body=httpbody_pb2.HttpBody(content_type=delivery.content_type, data=delivery.body)
            )

    async def RemoveBackground(self, request_iterator: AsyncIterator, context):
        with _call(context, "RemoveBackground") as (metadata, request_id):
            try:
                options, image = await self._read_stream(request_iterator)
                delivery = await self.removal.remove(
                    metadata.get("x-api-key"), request_id,
                    # What the idempotency key binds: the options exactly as sent, and the image.
                    {"typed_options": options.SerializeToString(deterministic=True), "image_file": image},
                    client_ip=client_ip(metadata.get("x-clearbg-client-ip"), context.peer()),
                    idempotency_key=metadata.get("idempotency-key"),
                    parse=lambda max_file_bytes: typed_request(options, image, max_file_bytes),
                )
            except Exception as exc:  # noqa: BLE001
                await _fail(context, exc)
            await context.send_initial_metadata(delivery.headers)
            result = delivery.result
            box = result.foreground
            return removebg_pb2.RemoveBackgroundResponse(
                image=delivery.body,
                content_type=delivery.content_type,
                width=result.width,
                height=result.height,
                foreground_type=TYPE_ENUMS.get(result.foreground_type, 0) if delivery.report_type else 0,
                credits_charged=format_credits(delivery.charged),
                credits_remaining=format_credits(delivery.remaining),
                type_label=dict(delivery.headers).get("x-type", ""),
                foreground=common_pb2.ForegroundBox(
                    top=box.top, left=box.left, width=box.width, height=box.height
                ),
            )

    async def _read_stream(self, request_iterator: AsyncIterator) -> tuple[removebg_pb2.RemoveBackgroundOptions, bytes]:
        """First message: options; then image chunks, refused as soon as they pass the cap."""
        options = None
        chunks: list[bytes] = []
        size = 0
        limit = self.removal.settings.max_file_bytes
        async for message in request_iterator:
            part = message.WhichOneof("part")
            if options is None:
                if part != "options":
                    raise bad_request("invalid_stream", "The first message must carry the options.")
                options = message.options
            elif part == "image_chunk":
                size += len(message.image_chunk)
                params.check_file_size(size, limit)
                chunks.append(message.image_chunk)
            else:
                raise bad_request("invalid_stream", "Only the first message may carry options.")
        if options is None:
            raise bad_request("invalid_stream", "The stream was empty: send the options, then the image.")
        return options, b"".join(chunks)


class AccountServicer(account_pb2_grpc.AccountServiceServicer):
    def __init__(self, removal: RemovalService):
        self.removal = removal

    async def _account(self, context, method: str):
        with _call(context, method) as (metadata, _):
            try:
                return (await self.removal.authenticate(metadata.get("x-api-key"))).account
            except Exception as exc:  # noqa: BLE001
                await _fail(context, exc)

    async def GetAccountHttp(self, request, context):
        account = await self._account(context, "GetAccountHttp")
        return account_pb2.GetAccountHttpResponse(
            body=httpbody_pb2.HttpBody(content_type="application/json", data=account_json(account))
        )

    async def GetAccount(self, request, context):
        return typed_account(await self._account(context, "GetAccount"))

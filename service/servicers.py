"""gRPC servicers: read metadata, call the use case, turn its answer or error into gRPC."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Iterator

import grpc
from google.api import httpbody_pb2

from clearbg.v1 import account_pb2, account_pb2_grpc, common_pb2, removebg_pb2, removebg_pb2_grpc
from service import params
from service.errors import ApiError, abort, bad_request, internal_error
from service.limits import client_ip
from service.logging import get_logger, request_scope
from service.removal import RemovalService
from service.rest_request import parse_body
from service.typed_options import TYPE_ENUMS, typed_fields

log = get_logger(__name__)


def _metadata(context: grpc.aio.ServicerContext) -> dict[str, str]:
    return {key: value for key, value in (context.invocation_metadata() or ()) if isinstance(value, str)}


@contextlib.contextmanager
def _call(context: grpc.aio.ServicerContext, method: str) -> Iterator[tuple[dict[str, str], str]]:
    """Reads the metadata once and binds the request id to every log line of the call."""
    metadata = _metadata(context)
    with request_scope(metadata.get("x-request-id"), method=method) as request_id:
        yield metadata, request_id


async def _fail(context: grpc.aio.ServicerContext, exc: BaseException) -> None:
    if isinstance(exc, ApiError):
        log.info("request_failed", status=exc.status, code=exc.code)
        await abort(context, exc)
    log.error("unexpected_error", exc_info=exc)
    await abort(context, internal_error())


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
                    metadata.get("x-api-key"), request_id, typed_fields(options, image),
                    client_ip=client_ip(metadata.get("x-clearbg-client-ip"), context.peer()),
                    idempotency_key=metadata.get("idempotency-key"),
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
                credits_charged=float(delivery.charged),
                credits_remaining=float(delivery.remaining),
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

    async def GetAccount(self, request, context):
        with _call(context, "GetAccount") as (metadata, _):
            try:
                caller = await self.removal.authenticate(metadata.get("x-api-key"))
            except Exception as exc:  # noqa: BLE001
                await _fail(context, exc)
            account = caller.account
            return account_pb2.GetAccountResponse(
                data=account_pb2.AccountData(
                    attributes=account_pb2.AccountAttributes(
                        credits=account_pb2.Credits(
                            total=float(account.total),
                            subscription=float(account.subscription),
                            payg=float(account.payg),
                            enterprise=float(account.enterprise),
                        ),
                        api=account_pb2.ApiAllowance(free_calls=account.free_calls_left(), sizes="all"),
                    )
                )
            )

"""The background-removal use case: authenticate, parse, probe, reserve credits, run.

No gRPC here: callers pass plain values and get a `Delivery` (body, content type, the REST
response headers) or an `ApiError`. Credits are reserved before the engine runs and given
back if the call fails before delivery (service/credits.py), so a failed call charges nothing.
"""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import functools
import json
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from decimal import Decimal
from typing import Protocol

from engine.types import EngineError, ImageInfo, RemovalOptions, RemovalResult
from service import params
from service.admission import Admission
from service.config import Settings
from service.credits import format_credits, paid_call, refuse_unpayable
from service.errors import ApiError, bad_request, database_unavailable
from service.fetching.remote_images import RemoteImages
from service.idempotency import Idempotency, IdempotencyRefused
from service.limits import (
    Decision,
    InProcessLimiter,
    RateLimits,
    cost_for_pixels,
    preview_ip_limited,
    rate_limit_metadata,
    rate_limited,
    with_rate_limit_headers,
)
from service.logging import get_logger
from service.reservations import Reservations
from service.storage import Account, ApiKey, Storage, StorageUnavailable
from service.storage.base import hash_key

log = get_logger(__name__)


class EngineLike(Protocol):
    def warm_up(self) -> None: ...
    def open_lanes(self) -> int: ...
    def describe(self) -> dict[str, str]: ...
    def matte_cache_counts(self) -> tuple[int, int]: ...
    def probe(self, data: bytes) -> ImageInfo: ...
    def remove(self, data: bytes, options: RemovalOptions) -> RemovalResult: ...


@dataclass(frozen=True)
class Caller:
    account: Account
    key: ApiKey


@dataclass(frozen=True)
class Delivery:
    body: bytes
    content_type: str
    headers: tuple[tuple[str, str], ...]
    result: RemovalResult
    charged: Decimal
    remaining: Decimal
    report_type: bool


class RemovalService:
    def __init__(
        self, storage: Storage, engine: EngineLike | None, settings: Settings, limits: RateLimits | None = None
    ):
        self.storage = storage
        # Megapixel-images per minute per key, previews per client IP (service/limits); in
        # process unless the server passes a shared (Redis) one.
        self.limits = limits or RateLimits(InProcessLimiter())
        self.engine = engine
        self.settings = settings
        self._executor = ThreadPoolExecutor(max_workers=settings.engine_workers, thread_name_prefix="engine")
        self.remote_images = RemoteImages(settings)  # image_url / bg_image_url, on threads of its own
        self.idempotency = Idempotency(storage, settings.idempotency_max_bytes, settings.idempotency_wait_s)
        # Calls wait for an engine thread only if they can expect to start in time (503 beyond).
        self.admission = Admission(settings.engine_workers, settings.max_queue_wait_s, max_queued=settings.max_queue)
        # Credits held by this server instance until delivered; the server runs its sweep.
        self.reservations = Reservations(
            storage, deadline_s=settings.reservation_deadline_s, heartbeat_s=settings.heartbeat_s,
            stale_s=settings.instance_stale_s,
        )

    def shutdown(self) -> None:
        # Not waiting: a call still in the engine after the shutdown grace is abandoned.
        self._executor.shutdown(wait=False, cancel_futures=True)
        self.remote_images.shutdown()

    async def _db(self, fn, *args):
        return await asyncio.to_thread(fn, *args)

    async def authenticate(self, api_key: str | None) -> Caller:
        if not api_key or not api_key.strip():
            raise ApiError(401, "missing_api_key", "Send your API key in the X-Api-Key header.")
        found = await self._db(self.storage.find_key, api_key.strip())
        if found is None:
            raise ApiError(401, "invalid_api_key", "The API key is invalid or has been revoked.")
        account, key = found
        return Caller(account, key)

    def _check_ready(self) -> None:
        if self.engine is None:
            raise ApiError(503, "not_ready", "The model is still loading; try again shortly.", headers=[("retry-after", "5")])

    async def _probe_header(self, data: bytes) -> ImageInfo:
        """The header only (no decode), so it runs beside inferences instead of queueing
        behind them: a call refused for its rate or its credits answers at once."""
        self._check_ready()
        return await asyncio.to_thread(self._probe, data)

    async def remove(
        self, api_key: str | None, request_id: str, fields: dict, accept_json: bool = False,
        client_ip: str | None = None, idempotency_key: str | None = None,
        parse: Callable[[int], params.RemovalRequest] | None = None,
    ) -> Delivery:
        """With an Idempotency-Key (not empty), run and charged at most once per account and
        key; a repeat gets the kept answer (service/idempotency.py). `fields` are REST fields,
        parsed by service.params; the typed door passes its own `parse` (given the file cap)
        and, as `fields`, what identifies the request for idempotency."""
        caller = await self.authenticate(api_key)
        if parse is None:
            parse = functools.partial(params.parse_fields, fields)
        run = functools.partial(self._remove_for, caller, api_key, request_id, parse, accept_json, client_ip)
        if not idempotency_key or not idempotency_key.strip():
            return await run()
        try:
            return await self.idempotency.run(
                caller.account.id, idempotency_key, fields, "json" if accept_json else "image", request_id, run
            )
        except IdempotencyRefused as exc:  # nothing ran: the limit headers as they stand (a peek)
            rate_key = hash_key(api_key.strip())
            raise with_rate_limit_headers(exc, await self.limits.for_key(rate_key, 0, caller.account.rate_limit_per_minute))

    async def _remove_for(
        self, caller: Caller, api_key: str, request_id: str, parse: Callable[[int], params.RemovalRequest],
        accept_json: bool, client_ip: str | None,
    ) -> Delivery:
        """Rate limits around the call: the request's megapixel cost once its size is known
        (an upload's header is read without decoding, so that is cheap), and before a download
        a free gate, so an empty bucket costs us no fetch. Every answer after authentication
        carries the limit headers; nothing is refunded (see service/limits/base.py)."""
        # The bucket is named after the key itself (hashed), not its row id: ids restart at 1
        # in every database, and deployments may share one Redis.
        rate_key, rate_limit = hash_key(api_key.strip()), caller.account.rate_limit_per_minute
        try:
            request = parse(self.settings.max_file_bytes)
        except ApiError as exc:  # refused before its size is known: the attempt costs one unit
            raise with_rate_limit_headers(exc, await self.limits.for_key(rate_key, 1, rate_limit))
        if request.image_url is not None or request.bg_image_url is not None:
            gate = await self.limits.check_key(rate_key, rate_limit)
            if not gate.allowed:
                raise rate_limited(gate)
        try:
            request = await self._download_sources(request)
            info = await self._probe_header(request.image)
        except ApiError as exc:
            raise with_rate_limit_headers(exc, await self.limits.for_key(rate_key, 1, rate_limit))
        decision = await self.limits.for_key(rate_key, cost_for_pixels(info.width, info.height), rate_limit)
        if not decision.allowed:
            raise rate_limited(decision)
        try:
            delivery = await self._remove_admitted(caller, request, info, request_id, accept_json, client_ip, decision)
        except StorageUnavailable:  # the database went away mid-call: nothing charged (service/reservations.py)
            raise with_rate_limit_headers(database_unavailable(), decision) from None
        except ApiError as exc:
            raise with_rate_limit_headers(exc, decision)
        return dataclasses.replace(delivery, headers=delivery.headers + rate_limit_metadata(decision))

    async def _remove_admitted(
        self, caller: Caller, request: params.RemovalRequest, info: ImageInfo, request_id: str,
        accept_json: bool, client_ip: str | None, decision: Decision,
    ) -> Delivery:
        # Queued first (503 at once when it could not start in time), then paid for (402 when the
        # account cannot pay, leaving the queue): a call the admission refuses never touches the
        # ledger. One the balance already rules out is refused before it queues. The credit is
        # given back if anything fails before the result is delivered, the caller going away
        # included (service/credits.py): a call cancelled while it waits never reaches the engine.
        refuse_unpayable(caller.account, request.size)
        self._check_ready()
        megapixels = info.width * info.height / 1e6
        async with self.admission.admit(megapixels) as ticket, \
                paid_call(self.reservations, caller.account.id, caller.key.id, request_id, request.size) as paid:
            if paid.size == "preview" and client_ip is not None:  # the servicer always passes one
                by_ip = await self.limits.for_preview_ip(client_ip)
                if not by_ip.allowed:
                    raise preview_ip_limited(by_ip, rate_limit_metadata(decision))
            options = dataclasses.replace(
                request.options, max_output_pixels=params.SIZE_PIXELS[paid.size], cache_scope=str(caller.account.id)
            )
            result = await ticket.run(self._executor, self._remove, request.image, options)
            delivery = self._deliver(
                result, paid.charged, paid.remaining, request.report_type, accept_json, request.fine_type
            )
        log.info(
            "removed",
            account_id=caller.account.id,
            size=paid.size,
            input_width=info.width,
            input_height=info.height,
            width=result.width,
            height=result.height,
            credits_charged=format_credits(paid.charged),
        )
        return delivery

    async def _download_sources(self, request: params.RemovalRequest) -> params.RemovalRequest:
        """image_url / bg_image_url, fetched after the cheap checks and before the probe."""
        if request.image_url is not None:
            request = dataclasses.replace(request, image=await self.remote_images.fetch("image_url", request.image_url))
        if request.bg_image_url is not None:
            background = await self.remote_images.fetch("bg_image_url", request.bg_image_url)
            request = dataclasses.replace(request, options=dataclasses.replace(request.options, bg_image=background))
        return request

    async def probe(self, data: bytes) -> ImageInfo:
        """The image's size from its header (400 if it is no image we read); for callers doing
        their own admission, as the dashboard's "Try it" does."""
        return await self._probe_header(data)

    async def run_engine(self, data: bytes, options: RemovalOptions, info: ImageInfo) -> RemovalResult:
        """The engine through the same admission as API calls (503 when it could not start in
        time), engine errors as 400s; `info` is `probe`'s answer for `data`."""
        self._check_ready()
        async with self.admission.admit(info.width * info.height / 1e6) as ticket:
            return await ticket.run(self._executor, self._remove, data, options)

    def _probe(self, data: bytes) -> ImageInfo:
        try:
            return self.engine.probe(data)
        except EngineError as exc:
            raise bad_request(exc.code, exc.detail) from None

    def _remove(self, data: bytes, options: RemovalOptions) -> RemovalResult:
        try:
            return self.engine.remove(data, options)
        except EngineError as exc:
            raise bad_request(exc.code, exc.detail) from None

    @staticmethod
    def _deliver(
        result: RemovalResult, charged: Decimal, remaining: Decimal, report_type: bool, accept_json: bool,
        fine_type: bool = False,
    ) -> Delivery:
        box = result.foreground
        headers = [
            ("x-width", str(result.width)),
            ("x-height", str(result.height)),
            ("x-credits-charged", format_credits(charged)),
            ("x-credits-remaining", format_credits(remaining)),
            ("x-foreground-top", str(box.top)),
            ("x-foreground-left", str(box.left)),
            ("x-foreground-width", str(box.width)),
            ("x-foreground-height", str(box.height)),
        ]
        if report_type:
            kind = (result.foreground_label or result.foreground_type) if fine_type else result.foreground_type
            headers.insert(2, ("x-type", kind))
        if accept_json:
            document = {
                "data": {
                    "result_b64": base64.b64encode(result.data).decode("ascii"),
                    "foreground_top": box.top,
                    "foreground_left": box.left,
                    "foreground_width": box.width,
                    "foreground_height": box.height,
                }
            }
            body, content_type = json.dumps(document, separators=(",", ":")).encode(), "application/json"
        else:
            body, content_type = result.data, result.content_type
        return Delivery(body, content_type, tuple(headers), result, charged, remaining, report_type)

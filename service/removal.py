"""The background-removal use case: authenticate, parse, probe, price, run, charge.

No gRPC here: callers pass plain values and get a `Delivery` (body, content type, the REST
response headers) or an `ApiError`. Credits move only after the engine produced a result,
so a failed call charges nothing.
"""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import json
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from decimal import Decimal
from typing import Protocol

from engine.types import EngineError, ImageInfo, RemovalOptions, RemovalResult
from service import params
from service.config import Settings
from service.errors import ApiError, bad_request
from service.fetching.remote_images import RemoteImages
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
from service.storage import Account, ApiKey, InsufficientCredits, InsufficientFreeCalls, Storage

log = get_logger(__name__)

PRICE = Decimal(1)  # every paid size costs one credit


class EngineLike(Protocol):
    def warm_up(self) -> None: ...
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


def format_credits(amount: Decimal) -> str:
    """'1', '0', '44.5': no exponent, no trailing zeros."""
    text = format(amount.normalize(), "f")
    return text if text != "-0" else "0"


def resolve_size(requested: str, account: Account) -> str:
    if requested != "auto":
        return requested
    return params.AUTO_SIZE if account.total >= PRICE else "preview"


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
        # Calls running or waiting for an engine thread (one event loop, so a plain counter);
        # beyond the cap the answer is 503, not an ever-growing queue.
        self._waiting = 0

    def shutdown(self) -> None:
        self._executor.shutdown(wait=True, cancel_futures=True)
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

    async def _run(self, fn, *args):
        """Runs engine work on the bounded pool, answering 503 when too many calls wait."""
        if self.engine is None:
            raise ApiError(503, "not_ready", "The model is still loading; try again shortly.", headers=[("retry-after", "5")])
        if self._waiting >= self.settings.engine_workers + self.settings.max_queue:
            raise ApiError(503, "overloaded", "Too many requests are queued; try again shortly.", headers=[("retry-after", "2")])
        self._waiting += 1
        try:
            return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)
        finally:
            self._waiting -= 1

    async def remove(
        self, api_key: str | None, request_id: str, fields: dict, accept_json: bool = False,
        client_ip: str | None = None,
    ) -> Delivery:
        """Rate limits around the call: a free gate before any work, then the request's
        megapixel cost once its size is known. Every answer after authentication carries the
        limit headers; nothing is refunded (see service/limits/base.py)."""
        caller = await self.authenticate(api_key)
        rate_key, rate_limit = str(caller.key.id), caller.account.rate_limit_per_minute
        gate = await self.limits.check_key(rate_key, rate_limit)
        if not gate.allowed:
            raise rate_limited(gate)
        try:
            request = params.parse_fields(fields, self.settings.max_file_bytes)
            request = await self._download_sources(request)
            info = await self._run(self._probe, request.image)
        except ApiError as exc:  # refused before its size is known: the attempt costs one unit
            raise with_rate_limit_headers(exc, await self.limits.for_key(rate_key, 1, rate_limit))
        decision = await self.limits.for_key(rate_key, cost_for_pixels(info.width, info.height), rate_limit)
        if not decision.allowed:
            raise rate_limited(decision)
        try:
            delivery = await self._remove_admitted(caller, request, info, request_id, accept_json, client_ip, decision)
        except ApiError as exc:
            raise with_rate_limit_headers(exc, decision)
        return dataclasses.replace(delivery, headers=delivery.headers + rate_limit_metadata(decision))

    async def _remove_admitted(
        self, caller: Caller, request: params.RemovalRequest, info: ImageInfo, request_id: str,
        accept_json: bool, client_ip: str | None, decision: Decision,
    ) -> Delivery:
        account = caller.account
        size = resolve_size(request.size, account)
        if size == "preview":
            if account.free_calls_left() <= 0:
                raise _no_free_calls()
            if client_ip is not None:  # the servicer always passes one; plain unit calls may not
                by_ip = await self.limits.for_preview_ip(client_ip)
                if not by_ip.allowed:
                    raise preview_ip_limited(by_ip, rate_limit_metadata(decision))
        elif account.total < PRICE:
            raise _no_credits(account)

        options = dataclasses.replace(request.options, max_output_pixels=params.SIZE_PIXELS[size])
        result = await self._run(self._remove, request.image, options)

        try:
            if size == "preview":
                after = await self._db(self.storage.use_free_call, account.id, caller.key.id, request_id)
                charged = Decimal(0)
            else:
                after = await self._db(self.storage.charge, account.id, caller.key.id, request_id, PRICE)
                charged = PRICE
        except InsufficientFreeCalls:
            raise _no_free_calls() from None
        except InsufficientCredits as exc:
            raise _no_credits(exc.account) from None
        log.info(
            "removed",
            account_id=account.id,
            size=size,
            input_width=info.width,
            input_height=info.height,
            width=result.width,
            height=result.height,
            credits_charged=format_credits(charged),
        )
        return self._deliver(result, charged, after.total, request.report_type, accept_json, request.fine_type)

    async def _download_sources(self, request: params.RemovalRequest) -> params.RemovalRequest:
        """image_url / bg_image_url, fetched after the cheap checks and before the probe."""
        if request.image_url is not None:
            request = dataclasses.replace(request, image=await self.remote_images.fetch("image_url", request.image_url))
        if request.bg_image_url is not None:
            background = await self.remote_images.fetch("bg_image_url", request.bg_image_url)
            request = dataclasses.replace(request, options=dataclasses.replace(request.options, bg_image=background))
        return request

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


def _no_credits(account: Account) -> ApiError:
    return ApiError(
        402,
        "insufficient_credits",
        f"This call costs {format_credits(PRICE)} credit and the account has {format_credits(account.total)}; "
        "use size=preview (free) or add credits.",
    )


def _no_free_calls() -> ApiError:
    return ApiError(402, "insufficient_free_calls", "No free preview calls are left this month.")

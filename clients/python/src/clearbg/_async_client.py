"""`AsyncClearBG`: the same surface as `ClearBG`, for asyncio code (httpx.AsyncClient)."""

from __future__ import annotations

import asyncio
import logging
from typing import Any, Awaitable, Callable, Mapping, Optional

import httpx

from clearbg._base import (
    ACCOUNT_PATH,
    REMOVEBG_PATH,
    RemovalRequest,
    Settings,
    account_of,
    api_error,
    removal_result,
)
from clearbg._client import lower_headers, transport_error
from clearbg._retry import delay_or_raise
from clearbg._uploads import FileInput
from clearbg.errors import ClearBGError
from clearbg.types import Account, RemovalResult

log = logging.getLogger("clearbg")


class AsyncClearBG:
    """The ClearBG REST API for asyncio: `await client.remove_background(...)`. Same settings,
    results, errors and retries as `ClearBG`. Use `async with`, or `await client.aclose()`."""

    def __init__(
        self,
        api_key: Optional[str] = None,
        base_url: Optional[str] = None,
        timeout: Optional[float] = None,
        max_retries: Optional[int] = None,
        *,
        http_client: Optional[httpx.AsyncClient] = None,
    ):
        self._settings = Settings(api_key, base_url, timeout, max_retries)
        self._own_http = http_client is None
        self._http = http_client or httpx.AsyncClient(timeout=self._settings.timeout)

    @property
    def base_url(self) -> str:
        return self._settings.base_url

    async def aclose(self) -> None:
        if self._own_http:
            await self._http.aclose()

    async def __aenter__(self) -> "AsyncClearBG":
        return self

    async def __aexit__(self, *exc_info: Any) -> None:
        await self.aclose()

    async def remove_background(
        self,
        image_file: Optional[FileInput] = None,
        *,
        image_url: Optional[str] = None,
        image_file_b64: Optional[str] = None,
        size: Optional[str] = None,
        type: Optional[str] = None,
        type_level: Optional[str] = None,
        format: Optional[str] = None,
        bg_color: Optional[str] = None,
        bg_image_url: Optional[str] = None,
        bg_image_file: Optional[FileInput] = None,
        channels: Optional[str] = None,
        crop: Optional[bool] = None,
        crop_margin: Optional[str] = None,
        scale: Optional[str] = None,
        position: Optional[str] = None,
        roi: Optional[str] = None,
        add_shadow: Optional[bool] = None,
        shadow_type: Optional[str] = None,
        shadow_opacity: Optional[int] = None,
        semitransparency: Optional[bool] = None,
        extra_fields: Optional[Mapping[str, Any]] = None,
        idempotency_key: Optional[str] = None,
        timeout: Optional[float] = None,
        max_retries: Optional[int] = None,
    ) -> RemovalResult:
        """POST /v1.0/removebg; see `ClearBG.remove_background`."""
        options = dict(locals())
        request = RemovalRequest(options, image_file, bg_image_file, extra_fields, idempotency_key)

        async def attempt() -> httpx.Response:
            body = request.body()
            return await self._http.post(
                self.base_url + REMOVEBG_PATH,
                content=body.__aiter__(),
                headers=request.headers(self._settings, body),
                timeout=self._timeout(timeout),
            )

        response = await self._with_retries(attempt, max_retries, request.rewindable)
        return removal_result(response.content, lower_headers(response))

    async def account(self, *, timeout: Optional[float] = None, max_retries: Optional[int] = None) -> Account:
        """GET /v1.0/account."""

        async def attempt() -> httpx.Response:
            return await self._http.get(
                self.base_url + ACCOUNT_PATH, headers=self._settings.headers(), timeout=self._timeout(timeout)
            )

        response = await self._with_retries(attempt, max_retries, True)
        return account_of(response.content, lower_headers(response))

    def _timeout(self, timeout: Optional[float]) -> float:
        return self._settings.timeout if timeout is None else timeout

    async def _with_retries(
        self, attempt: Callable[[], Awaitable[httpx.Response]], max_retries: Optional[int], rewindable: bool
    ) -> httpx.Response:
        retries = self._settings.max_retries if max_retries is None else max_retries
        number = 0
        while True:
            try:
                response = await attempt()
            except httpx.TransportError as exc:
                error: ClearBGError = transport_error(exc)
            else:
                if 200 <= response.status_code < 300:
                    return response
                error = api_error(response.status_code, response.reason_phrase, lower_headers(response), response.content)
            delay = delay_or_raise(error, number, retries, rewindable)
            await asyncio.sleep(delay)
            number += 1

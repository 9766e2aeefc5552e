"""`ClearBG`: the synchronous client (httpx)."""

from __future__ import annotations

import logging
import time
from typing import Any, Callable, Dict, Mapping, Optional

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
from clearbg._retry import Gate, delay_or_raise
from clearbg._uploads import FileInput
from clearbg.errors import APIConnectionError, APITimeoutError, ClearBGError
from clearbg.types import Account, RemovalResult

log = logging.getLogger("clearbg")


def lower_headers(response: httpx.Response) -> Dict[str, str]:
    return {name.lower(): value for name, value in response.headers.items()}


def transport_error(exc: httpx.TransportError) -> APIConnectionError:
    if isinstance(exc, httpx.TimeoutException):
        return APITimeoutError(f"No answer within the timeout ({type(exc).__name__}).")
    return APIConnectionError(f"Connection error: {exc or type(exc).__name__}")


class ClearBG:
    """The ClearBG REST API.

    api_key: else CLEARBG_API_KEY; base_url: else CLEARBG_BASE_URL, else https://api.clearbg.ai.
    timeout: seconds for one attempt (default 300); max_retries: retries of a failed call
    (default 2: 429 and 503 after Retry-After, 408, 409 idempotency_in_flight, 500, 502, 504 and
    connection failures after a backoff). Use it as a context manager, or call close().
    """

    def __init__(
        self,
        api_key: Optional[str] = None,
        base_url: Optional[str] = None,
        timeout: Optional[float] = None,
        max_retries: Optional[int] = None,
        *,
        http_client: Optional[httpx.Client] = None,
    ):
        self._settings = Settings(api_key, base_url, timeout, max_retries)
        self._own_http = http_client is None
        self._http = http_client or httpx.Client(timeout=self._settings.timeout)
        # The CLI's workers share one pause for Retry-After (clearbg/cli); None: each call waits alone.
        self._gate: Optional[Gate] = None

    @property
    def base_url(self) -> str:
        return self._settings.base_url

    def close(self) -> None:
        if self._own_http:
            self._http.close()

    def __enter__(self) -> "ClearBG":
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()

    def remove_background(
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
        """POST /v1.0/removebg. One source: `image_file` (a path, bytes or a binary file object,
        streamed), `image_url` or `image_file_b64`. The other keywords are the API's fields;
        None leaves a field out (the server's default). Raises an APIError subclass for an
        error answer, APIConnectionError / APITimeoutError when none came."""
        options = dict(locals())
        request = RemovalRequest(options, image_file, bg_image_file, extra_fields, idempotency_key)

        def attempt() -> httpx.Response:
            body = request.body()
            return self._http.post(
                self.base_url + REMOVEBG_PATH,
                content=iter(body),
                headers=request.headers(self._settings, body),
                timeout=self._timeout(timeout),
            )

        response = self._with_retries(attempt, max_retries, request.rewindable)
        return removal_result(response.content, lower_headers(response))

    def account(self, *, timeout: Optional[float] = None, max_retries: Optional[int] = None) -> Account:
        """GET /v1.0/account: credits (total, subscription, payg, enterprise) and free calls."""

        def attempt() -> httpx.Response:
            return self._http.get(
                self.base_url + ACCOUNT_PATH, headers=self._settings.headers(), timeout=self._timeout(timeout)
            )

        response = self._with_retries(attempt, max_retries, True)
        return account_of(response.content, lower_headers(response))

    def _timeout(self, timeout: Optional[float]) -> float:
        return self._settings.timeout if timeout is None else timeout

    def _with_retries(
        self, attempt: Callable[[], httpx.Response], max_retries: Optional[int], rewindable: bool
    ) -> httpx.Response:
        retries = self._settings.max_retries if max_retries is None else max_retries
        gate = self._gate
        ticket = gate.join() if gate is not None else 0
        try:
            number = 0
            while True:
                if gate is not None:
                    gate.wait(ticket)
                through = False  # answered, and not held back by a Retry-After
                try:
                    try:
                        response = attempt()
                    except httpx.TransportError as exc:
                        error: ClearBGError = transport_error(exc)
                    else:
                        if 200 <= response.status_code < 300:
                            through = True
                            return response
                        error = api_error(
                            response.status_code, response.reason_phrase, lower_headers(response), response.content
                        )
                        retry_after = getattr(error, "retry_after", None)
                        through = retry_after is None
                        if gate is not None and retry_after is not None:
                            gate.hold(retry_after)  # every worker waits: the limit is the key's, not the call's
                finally:
                    if gate is not None:
                        gate.answered(ticket, through)
                delay = delay_or_raise(error, number, retries, rewindable)
                if gate is None:
                    time.sleep(delay)
                elif getattr(error, "retry_after", None) is None:
                    gate.pause(delay)  # else the gate waits out the Retry-After
                number += 1
        finally:
            if gate is not None:
                gate.leave(ticket)

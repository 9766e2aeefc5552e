"""Every failure the SDK reports is a `ClearBGError`; the server's answers are `APIError`s, one
class per status, each with the server's `code`, `title` and `detail` and the request id."""

from __future__ import annotations

import json
import re
from typing import Any, Dict, Mapping, Optional, Type

__all__ = [
    "ClearBGError",
    "APIError",
    "BadRequestError",
    "AuthenticationError",
    "InsufficientCreditsError",
    "PermissionDeniedError",
    "ConflictError",
    "UnprocessableEntityError",
    "RateLimitError",
    "InternalServerError",
    "ServiceUnavailableError",
    "APIConnectionError",
    "APITimeoutError",
]


class ClearBGError(Exception):
    """Base class of every error the SDK raises (also: no API key configured)."""


class APIError(ClearBGError):
    """The server answered with an error status.

    status: the HTTP status (402); code: the machine-readable code from the body
    (`insufficient_credits`; None when the body had none, e.g. a proxy's page); title, detail:
    the body's texts; request_id: the gateway's X-Request-Id (quote it when asking for help);
    retry_after: seconds the server asked to wait (Retry-After), when it said; headers; body:
    the parsed JSON body, or the text when it was not JSON.
    """

    def __init__(
        self,
        status: int,
        *,
        code: Optional[str],
        title: str,
        detail: str,
        request_id: Optional[str] = None,
        retry_after: Optional[float] = None,
        headers: Optional[Mapping[str, str]] = None,
        body: Any = None,
    ):
        self.status = status
        self.code = code
        self.title = title
        self.detail = detail
        self.request_id = request_id
        self.retry_after = retry_after
        self.headers: Dict[str, str] = {k.lower(): v for k, v in (headers or {}).items()}
        self.body = body
        suffix = f" (request id {request_id})" if request_id else ""
        super().__init__(f"{status} {code or title}: {detail}{suffix}")


class BadRequestError(APIError):
    """400: a parameter or the image; `code` names which (invalid_size, invalid_file_type, ...)."""


class AuthenticationError(APIError):
    """401: missing or invalid API key."""


class InsufficientCreditsError(APIError):
    """402: no credits (insufficient_credits) or no free previews left (insufficient_free_calls)."""


class PermissionDeniedError(APIError):
    """403: e.g. too many free previews from this IP address."""


class ConflictError(APIError):
    """409: e.g. idempotency_in_flight (retried), idempotency_result_evicted."""


class UnprocessableEntityError(APIError):
    """422: e.g. idempotency_key_reused (the key was sent before with other parameters)."""


class RateLimitError(APIError):
    """429: the key's megapixel-images per minute; `retry_after` says when to try again."""


class InternalServerError(APIError):
    """500 and other 5xx answers (503 aside): nothing was charged."""


class ServiceUnavailableError(APIError):
    """503: overloaded, starting or shutting down; `retry_after` says when to try again."""


class APIConnectionError(ClearBGError):
    """No answer came: the connection failed or broke."""

    def __init__(self, message: str = "Connection error.", *, request_id: Optional[str] = None):
        super().__init__(message)
        self.request_id = request_id


class APITimeoutError(APIConnectionError):
    """No answer came within the timeout."""


_CLASSES: Dict[int, Type[APIError]] = {
    400: BadRequestError,
    401: AuthenticationError,
    402: InsufficientCreditsError,
    403: PermissionDeniedError,
    409: ConflictError,
    422: UnprocessableEntityError,
    429: RateLimitError,
    503: ServiceUnavailableError,
}


def error_class(status: int) -> Type[APIError]:
    if status in _CLASSES:
        return _CLASSES[status]
    return InternalServerError if status >= 500 else APIError


def _readable(status: int, title: str, text: str) -> str:
    snippet = re.sub(r"\s+", " ", re.sub(r"<[^>]*>", " ", text)).strip()[:200]
    return f"HTTP {status} {title} without a ClearBG error body" + (f": {snippet}" if snippet else "")


def error_from_parts(
    status: int,
    reason: str,
    headers: Mapping[str, str],
    raw: bytes,
    retry_after: Optional[float] = None,
    request_id: Optional[str] = None,
) -> APIError:
    """The error for an answer: the class for its status, the fields from the body
    `{"errors":[{"title","code","detail"}]}` when it has that shape."""
    text = raw.decode("utf-8", "replace")
    body: Any = text
    try:
        body = json.loads(text)
    except ValueError:
        pass  # not JSON: a proxy's or load balancer's page, reported with its status
    entries = body.get("errors") if isinstance(body, dict) else None
    entry = entries[0] if isinstance(entries, list) and entries and isinstance(entries[0], dict) else None
    title = reason or f"HTTP {status}"
    if entry is not None and isinstance(entry.get("code"), str):
        code: Optional[str] = entry["code"]
        title = str(entry.get("title") or title)
        detail = str(entry.get("detail") or title)
    else:
        code, detail = None, _readable(status, title, text)
    lowered = {k.lower(): v for k, v in headers.items()}
    return error_class(status)(
        status,
        code=code,
        title=title,
        detail=detail,
        request_id=request_id if request_id is not None else lowered.get("x-request-id"),
        retry_after=retry_after,
        headers=lowered,
        body=body,
    )

"""What the sync and async clients share: settings, the request a call makes, and what its
answer means. No I/O here."""

from __future__ import annotations

import json
import os
import uuid
from decimal import Decimal
from typing import Any, Dict, List, Mapping, Optional, Tuple

from clearbg._retry import parse_retry_after
from clearbg._uploads import FileInput, FileSource, MultipartBody
from clearbg._version import __version__
from clearbg.errors import APIError, ClearBGError, error_from_parts
from clearbg.types import Account, Credits, Foreground, RateLimit, RemovalResult

DEFAULT_BASE_URL = "https://api.clearbg.ai"
# A 22 MB upload over a slow link, plus a wait in the server's queue; the gateway allows 300 s.
DEFAULT_TIMEOUT_S = 300.0
DEFAULT_MAX_RETRIES = 2
REMOVEBG_PATH = "/v1.0/removebg"
ACCOUNT_PATH = "/v1.0/account"
USER_AGENT = f"clearbg-python/{__version__}"

# The remove_background keywords sent as form fields, in this order (files apart).
TEXT_OPTIONS = (
    "image_url", "image_file_b64", "size", "type", "type_level", "format", "bg_color", "bg_image_url",
    "channels", "crop", "crop_margin", "scale", "position", "roi", "add_shadow", "shadow_type",
    "shadow_opacity", "semitransparency",
)


class Settings:
    def __init__(
        self,
        api_key: Optional[str],
        base_url: Optional[str],
        timeout: Optional[float],
        max_retries: Optional[int],
    ):
        key = api_key if api_key is not None else os.environ.get("CLEARBG_API_KEY")
        if not key or not key.strip():
            raise ClearBGError(
                "No API key: pass api_key=... or set CLEARBG_API_KEY (keys come from your ClearBG dashboard, "
                "or from `clearbg-admin create-key` on a server you run)."
            )
        self.api_key = key.strip()
        url = base_url or os.environ.get("CLEARBG_BASE_URL") or DEFAULT_BASE_URL
        self.base_url = url.strip().rstrip("/")
        if not self.base_url.startswith(("http://", "https://")):
            raise ClearBGError(f"base_url must start with http:// or https://, got {self.base_url!r}")
        self.timeout = DEFAULT_TIMEOUT_S if timeout is None else float(timeout)
        self.max_retries = DEFAULT_MAX_RETRIES if max_retries is None else int(max_retries)
        if self.max_retries < 0:
            raise ValueError("max_retries must be 0 or more")

    def headers(self) -> Dict[str, str]:
        return {"X-Api-Key": self.api_key, "User-Agent": USER_AGENT}


def form_value(value: Any) -> str:
    """A keyword's value as the form field carries it (booleans as true/false)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


class RemovalRequest:
    """One logical remove_background call: its form, files and Idempotency-Key (the same on
    every retry)."""

    def __init__(
        self,
        options: Mapping[str, Any],
        image_file: Optional[FileInput],
        bg_image_file: Optional[FileInput],
        extra_fields: Optional[Mapping[str, Any]],
        idempotency_key: Optional[str],
    ):
        self.fields: List[Tuple[str, str]] = [
            (name, form_value(options[name])) for name in TEXT_OPTIONS if options.get(name) is not None
        ]
        for name, value in (extra_fields or {}).items():
            if value is not None:
                self.fields.append((name, form_value(value)))
        self.files: List[FileSource] = []
        if image_file is not None:
            self.files.append(FileSource(image_file, "image_file"))
        if bg_image_file is not None:
            self.files.append(FileSource(bg_image_file, "bg_image_file"))
        self.idempotency_key = idempotency_key or str(uuid.uuid4())

    @property
    def rewindable(self) -> bool:
        return all(source.rewindable for source in self.files)

    def body(self) -> MultipartBody:
        """A fresh body for each attempt (files are read again from their start)."""
        return MultipartBody(self.fields, self.files)

    def headers(self, settings: Settings, body: MultipartBody) -> Dict[str, str]:
        headers = settings.headers()
        headers["Idempotency-Key"] = self.idempotency_key
        headers.update(body.headers())
        return headers


def _int(headers: Mapping[str, str], name: str) -> Optional[int]:
    value = headers.get(name)
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None


def _decimal(headers: Mapping[str, str], name: str) -> Decimal:
    value = headers.get(name)
    try:
        return Decimal(value) if value is not None else Decimal(0)
    except ArithmeticError:
        return Decimal(0)


def rate_limit_of(headers: Mapping[str, str]) -> RateLimit:
    return RateLimit(
        _int(headers, "x-ratelimit-limit"), _int(headers, "x-ratelimit-remaining"), _int(headers, "x-ratelimit-reset")
    )


def removal_result(content: bytes, headers: Mapping[str, str]) -> RemovalResult:
    """A 200 answer of POST /v1.0/removebg; `headers` with lower-case names."""
    return RemovalResult(
        content=content,
        content_type=headers.get("content-type", "application/octet-stream"),
        width=_int(headers, "x-width") or 0,
        height=_int(headers, "x-height") or 0,
        type=headers.get("x-type"),
        credits_charged=_decimal(headers, "x-credits-charged"),
        credits_remaining=_decimal(headers, "x-credits-remaining"),
        foreground=Foreground(
            *(_int(headers, f"x-foreground-{side}") or 0 for side in ("top", "left", "width", "height"))
        ),
        rate_limit=rate_limit_of(headers),
        request_id=headers.get("x-request-id"),
        replayed=headers.get("idempotent-replayed", "").lower() == "true",
        headers=dict(headers),
    )


def account_of(content: bytes, headers: Mapping[str, str]) -> Account:
    try:
        document = json.loads(content.decode("utf-8"), parse_float=Decimal, parse_int=Decimal)
        attributes = document["data"]["attributes"]
        credits = attributes["credits"]
        return Account(
            credits=Credits(*(Decimal(credits.get(name, 0)) for name in ("total", "subscription", "payg", "enterprise"))),
            free_calls=int(attributes.get("api", {}).get("free_calls", 0)),
            sizes=str(attributes.get("api", {}).get("sizes", "")),
            request_id=headers.get("x-request-id"),
        )
    except (ValueError, KeyError, TypeError, AttributeError):
        raise ClearBGError(f"GET {ACCOUNT_PATH} answered a body of an unexpected shape: {content[:200]!r}") from None


def api_error(status: int, reason: str, headers: Mapping[str, str], content: bytes) -> APIError:
    return error_from_parts(status, reason, headers, content, parse_retry_after(headers.get("retry-after")))

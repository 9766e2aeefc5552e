"""API errors and how they leave a gRPC call (the convention the gateway relies on).

A failed call sends no initial metadata, only trailing metadata `x-http-status` and
`x-error-body` (the JSON error body), so the response is trailers-only and Envoy turns it
into HTTP headers; the gateway's Lua filter makes them the HTTP status and body. For gRPC
callers the same error is also a `google.rpc.Status` in `grpc-status-details-bin` (gRPC's
richer error model): an ErrorInfo with the REST code, a BadRequest naming the field where one
is at fault, a RetryInfo where there is a Retry-After. The gateway strips it from REST answers.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

import grpc
from google.protobuf import duration_pb2
from google.rpc import error_details_pb2, status_pb2

TITLES = {
    400: "Invalid request",
    401: "Authentication failed",
    402: "Insufficient credits",
    403: "Forbidden",
    404: "Not found",
    413: "Payload too large",
    429: "Rate limit exceeded",
    500: "Internal error",
    503: "Service unavailable",
}

GRPC_CODES = {
    400: grpc.StatusCode.INVALID_ARGUMENT,
    401: grpc.StatusCode.UNAUTHENTICATED,
    402: grpc.StatusCode.FAILED_PRECONDITION,
    403: grpc.StatusCode.PERMISSION_DENIED,
    404: grpc.StatusCode.NOT_FOUND,
    413: grpc.StatusCode.INVALID_ARGUMENT,
    429: grpc.StatusCode.RESOURCE_EXHAUSTED,
    500: grpc.StatusCode.INTERNAL,
    503: grpc.StatusCode.UNAVAILABLE,
}

Headers = Sequence[tuple[str, str]]
ERROR_DOMAIN = "clearbg.ai"
STATUS_DETAILS_KEY = "grpc-status-details-bin"


class ApiError(Exception):
    """An error the caller may see in full: every field is safe to send."""

    def __init__(
        self,
        status: int,
        code: str,
        detail: str,
        title: str | None = None,
        headers: Headers = (),
        field: str | None = None,
    ):
        super().__init__(detail)
        self.status = status
        self.code = code
        self.title = title or TITLES.get(status, "Error")
        self.detail = detail
        # Extra response headers (rate limit, retry-after) that go with the error.
        self.headers = tuple(headers)
        # The request field at fault, as its path in the typed message (`roi.x1.percent`).
        self.field = field

    def body(self) -> str:
        error = {"title": self.title, "code": self.code, "detail": self.detail}
        return json.dumps({"errors": [error]}, ensure_ascii=True, separators=(",", ":"))

    def trailing_metadata(self) -> tuple[tuple[str, str], ...]:
        return (
            ("x-http-status", str(self.status)),
            ("x-error-body", self.body()),
            *self.headers,
        )

    def grpc_code(self) -> grpc.StatusCode:
        return GRPC_CODES.get(self.status, grpc.StatusCode.UNKNOWN)

    def status_details(self) -> bytes:
        """The error as a serialized google.rpc.Status (code and message as the call's own)."""
        info = error_details_pb2.ErrorInfo(reason=self.code, domain=ERROR_DOMAIN, metadata={"http_status": str(self.status)})
        status = status_pb2.Status(code=self.grpc_code().value[0], message=self.detail)
        status.details.add().Pack(info)
        if self.field:
            violation = error_details_pb2.BadRequest.FieldViolation(field=self.field, description=self.detail)
            status.details.add().Pack(error_details_pb2.BadRequest(field_violations=[violation]))
        retry_after = dict(self.headers).get("retry-after", "")
        if retry_after.isdigit():
            status.details.add().Pack(error_details_pb2.RetryInfo(retry_delay=duration_pb2.Duration(seconds=int(retry_after))))
        return status.SerializeToString()


def shown(value: str, limit: int = 40) -> str:
    """A caller's value quoted for an error detail, cut short: details travel in metadata,
    which has size limits, and must never echo a whole upload."""
    text = value if len(value) <= limit else value[:limit] + "..."
    return repr(text)


def bad_request(code: str, detail: str) -> ApiError:
    return ApiError(400, code, detail)


def database_unavailable() -> ApiError:
    """The account database is restarting or unreachable (service/storage: StorageUnavailable):
    nothing was charged, and a retry shortly should pass."""
    return ApiError(
        503, "database_unavailable", "The account database is unreachable; nothing was charged. Please try again shortly.",
        headers=[("retry-after", "2")],
    )


def internal_error() -> ApiError:
    return ApiError(500, "internal_error", "The request failed on our side; nothing was charged. Please try again.")


async def abort(context: grpc.aio.ServicerContext, error: ApiError) -> None:
    """Ends the call with `error`; raises (grpc's AbortError) like `context.abort` itself."""
    await context.abort(
        error.grpc_code(), error.detail,
        trailing_metadata=(*error.trailing_metadata(), (STATUS_DETAILS_KEY, error.status_details())),
    )

"""The API errors a rate limit produces, in the project's error shape (service/errors.py)."""

from __future__ import annotations

from service.errors import ApiError
from service.limits.gcra import Decision
from service.limits.headers import rate_limit_metadata


def rate_limited(decision: Decision) -> ApiError:
    """429 for a key over its megapixel-images per minute, with the limit headers and Retry-After."""
    return ApiError(
        429,
        "rate_limit_exceeded",
        f"Rate limit of {decision.limit} megapixel-images per minute exceeded; "
        f"retry in {decision.retry_after} s.",
        headers=rate_limit_metadata(decision),
    )


def preview_ip_limited(decision: Decision, key_headers: tuple[tuple[str, str], ...] = ()) -> ApiError:
    """403 for a client IP over its free previews per minute. The X-RateLimit-* headers stay the
    key's (`key_headers`); Retry-After says when this IP may preview again."""
    return ApiError(
        403,
        "ip_rate_limit_exceeded",
        f"Too many free preview calls from this IP address ({decision.limit} per minute); "
        f"retry in {decision.retry_after} s.",
        headers=(*key_headers, ("retry-after", str(decision.retry_after))),
    )


def limiter_unavailable() -> ApiError:
    """503 when the shared rate-limit store (Redis) can't be reached: refusing is safer than
    serving without limits, and the cause (Redis down) is the operator's, not the caller's."""
    return ApiError(
        503,
        "rate_limiter_unavailable",
        "The service can't check rate limits right now; try again shortly.",
        headers=(("retry-after", "1"),),
    )


def with_rate_limit_headers(error: ApiError, decision: Decision) -> ApiError:
    """An error raised after the request was admitted, carrying the limit headers too
    (the headers are on every answer, success or not)."""
    names = {name for name, _ in error.headers}
    error.headers = (*error.headers, *(h for h in rate_limit_metadata(decision) if h[0] not in names))
    return error

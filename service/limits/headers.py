"""A Decision as response metadata (the REST headers; names from the project's conventions)."""

from __future__ import annotations

from service.limits.gcra import Decision


def rate_limit_metadata(decision: Decision) -> tuple[tuple[str, str], ...]:
    """X-RateLimit-Limit/-Remaining/-Reset always, Retry-After only when denied.

    On success they go into the initial metadata; on any error, into the trailing metadata
    beside x-http-status, so that they reach the client on every answer.
    """
    pairs = [
        ("x-ratelimit-limit", str(decision.limit)),
        ("x-ratelimit-remaining", str(decision.remaining)),
        ("x-ratelimit-reset", str(decision.reset)),
    ]
    if not decision.allowed:
        pairs.append(("retry-after", str(decision.retry_after)))
    return tuple(pairs)

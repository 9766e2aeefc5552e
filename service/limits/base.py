"""The limiter interface that the service depends on, and the error for a backend that is down."""

from __future__ import annotations

from typing import Protocol

from service.limits.gcra import Decision


class LimiterUnavailable(Exception):
    """The shared backend (Redis) could not be asked; the caller answers 503, never 429."""


class RateLimiter(Protocol):
    """Counts cost units per key per minute (GCRA; see service/limits/gcra.py).

    There is deliberately no refund. remove.bg counts attempts, and a rate limit protects the
    server's capacity, which a request that later fails has used too (upload, decode, the queue,
    often the model). With refunds, a client sending requests that fail (bad images, no
    credits) would never be limited at all, and with two servers a refund races the other
    server's acquires. A request is charged once, when it is admitted, whatever happens next.
    """

    async def acquire(
        self, key: str, cost: int, limit_per_minute: int, *, charge: bool = True
    ) -> Decision:
        """Charge `cost` units to `key` if they fit. With charge=False (or cost 0) only
        report what would happen; nothing is stored."""
        ...

    async def aclose(self) -> None:
        """Release connections (no-op in process)."""
        ...

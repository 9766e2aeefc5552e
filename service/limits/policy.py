"""The service's two limits on one limiter: per API key (429) and previews per client IP (403).

Both share the same GCRA backend and differ only in key namespace, cost and limit.
"""

from __future__ import annotations

import hashlib
import math
import time
from collections.abc import Callable

from service import metrics
from service.limits.base import LimiterUnavailable, RateLimiter
from service.limits.errors import limiter_unavailable
from service.limits.gcra import Decision
from service.limits.memory import InProcessLimiter
from service.logging import get_logger

log = get_logger(__name__)

DEFAULT_KEY_LIMIT_PER_MINUTE = 500  # accounts carry their own (storage: rate_limit_per_minute)
DEFAULT_PREVIEW_IP_LIMIT_PER_MINUTE = 50


def limiter_from_url(url: str | None) -> RateLimiter:
    """CLEARBG_REDIS_URL -> the shared Redis limiter; unset or empty -> in process."""
    if not url or not url.strip():
        return InProcessLimiter()
    from service.limits.redis_limiter import RedisLimiter

    return RedisLimiter(url.strip())


def client_ip(gateway_header: str | None, peer: str | None) -> str:
    """The address previews are counted against: x-clearbg-client-ip, which Envoy overwrites
    with the downstream address (so a client can't choose it), else the gRPC peer for calls
    that reach the server directly ("ipv4:1.2.3.4:5678", "ipv6:[::1]:5678" -> the address).
    The direct gRPC port must stay private (it trusts that metadata)."""
    if gateway_header and gateway_header.strip():
        return gateway_header.strip()
    if not peer:
        return "unknown"
    kind, _, rest = peer.partition(":")
    if kind == "ipv6" and rest.startswith("["):
        return rest[1:].split("]", 1)[0]
    if kind == "ipv4":
        return rest.rsplit(":", 1)[0]
    return peer


def _digest(value: str) -> str:
    # Keys are stored under a digest: the limiter's store never holds an API key, and an odd
    # client IP string can't reach into another namespace.
    return hashlib.blake2b(value.encode(), digest_size=16).hexdigest()


class RateLimits:
    def __init__(
        self,
        limiter: RateLimiter,
        preview_ip_limit_per_minute: int = DEFAULT_PREVIEW_IP_LIMIT_PER_MINUTE,
        *,
        fail_open: bool = False,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if preview_ip_limit_per_minute < 1:
            raise ValueError("the preview limit per IP must be at least 1 per minute")
        self.limiter = limiter
        self.preview_ip_limit = preview_ip_limit_per_minute
        # CLEARBG_RATE_LIMIT_ON_REDIS_DOWN: open (serve unlimited) or closed (503) while the
        # shared store is unreachable.
        self.fail_open = fail_open
        self.clock = clock
        self.unavailable_total = 0

    async def check_key(self, key: str, limit_per_minute: int) -> Decision:
        """Would a 1-unit request pass now? Charges nothing: the gate before a download, so a
        key with an empty bucket costs the server no fetch. `key` names the bucket: anything
        stable and unique to the API key (the service passes the key's stored hash)."""
        return await self._acquire("key:" + _digest(key), 1, limit_per_minute, charge=False)

    async def for_key(self, key: str, cost: int, limit_per_minute: int) -> Decision:
        """Charge a request's megapixel cost to its API key (denied -> `rate_limited`, 429).

        Raises the 503 ApiError `limiter_unavailable` when the shared store is down."""
        return await self._acquire("key:" + _digest(key), cost, limit_per_minute)

    async def for_preview_ip(self, client_ip: str) -> Decision:
        """Charge one preview to the client IP from x-clearbg-client-ip (denied ->
        `preview_ip_limited`, 403). Same 503 as `for_key` when the store is down."""
        return await self._acquire("ip:" + _digest(client_ip), 1, self.preview_ip_limit)

    async def _acquire(self, key: str, cost: int, limit: int, charge: bool = True) -> Decision:
        try:
            return await self.limiter.acquire(key, cost, limit, charge=charge)
        except LimiterUnavailable as exc:
            self.unavailable_total += 1
            policy = "open" if self.fail_open else "closed"
            metrics.record_limiter_unavailable(policy)
            log.warning("rate_limiter_unavailable", policy=policy, error=str(exc))
            if not self.fail_open:
                raise limiter_unavailable() from None
        # Fail-open: allowed, and the headers say the full limit (nothing could be counted).
        return Decision(True, limit, limit, math.ceil(self.clock()), 0)

    async def aclose(self) -> None:
        await self.limiter.aclose()

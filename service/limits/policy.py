"""The service's two limits on one limiter: per API key (429) and previews per client IP (403).

Both share the same GCRA backend and differ only in key namespace, cost and limit.
"""

from __future__ import annotations

import hashlib

from service.limits.base import RateLimiter
from service.limits.gcra import Decision
from service.limits.memory import InProcessLimiter

DEFAULT_KEY_LIMIT_PER_MINUTE = 500  # accounts carry their own (storage: rate_limit_per_minute)
DEFAULT_PREVIEW_IP_LIMIT_PER_MINUTE = 50


def limiter_from_url(url: str | None) -> RateLimiter:
    """CLEARBG_REDIS_URL -> the shared Redis limiter; unset or empty -> in process."""
    if not url or not url.strip():
        return InProcessLimiter()
    from service.limits.redis_limiter import RedisLimiter

    return RedisLimiter(url.strip())


def _digest(value: str) -> str:
    # Keys are stored under a digest: the limiter's store never holds an API key, and an odd
    # client IP string can't reach into another namespace.
    return hashlib.blake2b(value.encode(), digest_size=16).hexdigest()


class RateLimits:
    def __init__(
        self,
        limiter: RateLimiter,
        preview_ip_limit_per_minute: int = DEFAULT_PREVIEW_IP_LIMIT_PER_MINUTE,
    ) -> None:
        if preview_ip_limit_per_minute < 1:
            raise ValueError("the preview limit per IP must be at least 1 per minute")
        self.limiter = limiter
        self.preview_ip_limit = preview_ip_limit_per_minute

    async def for_key(self, api_key: str, cost: int, limit_per_minute: int) -> Decision:
        """Charge a request's megapixel cost to its API key (denied -> 429 with Retry-After)."""
        return await self.limiter.acquire("key:" + _digest(api_key), cost, limit_per_minute)

    async def for_preview_ip(self, client_ip: str) -> Decision:
        """Charge one preview to the client IP from x-clearbg-client-ip (denied -> 403)."""
        return await self.limiter.acquire("ip:" + _digest(client_ip), 1, self.preview_ip_limit)

    async def aclose(self) -> None:
        await self.limiter.aclose()

"""Rate limits: megapixel-images per minute per API key, and previews per client IP.

Use `RateLimits(limiter_from_url(os.environ.get("CLEARBG_REDIS_URL")), preview_limit)`, then
`for_key` / `for_preview_ip`, and `rate_limit_metadata(decision)` for the headers.
"""

from service.limits.base import LimiterUnavailable, RateLimiter
from service.limits.errors import (
    limiter_unavailable,
    preview_ip_limited,
    rate_limited,
    with_rate_limit_headers,
)
from service.limits.gcra import Decision, cost_for_pixels
from service.limits.headers import rate_limit_metadata
from service.limits.memory import InProcessLimiter
from service.limits.policy import (
    DEFAULT_KEY_LIMIT_PER_MINUTE,
    DEFAULT_PREVIEW_IP_LIMIT_PER_MINUTE,
    RateLimits,
    client_ip,
    limiter_from_url,
)

__all__ = [
    "DEFAULT_KEY_LIMIT_PER_MINUTE",
    "DEFAULT_PREVIEW_IP_LIMIT_PER_MINUTE",
    "Decision",
    "InProcessLimiter",
    "LimiterUnavailable",
    "RateLimiter",
    "RateLimits",
    "client_ip",
    "cost_for_pixels",
    "limiter_from_url",
    "limiter_unavailable",
    "preview_ip_limited",
    "rate_limit_metadata",
    "rate_limited",
    "with_rate_limit_headers",
]

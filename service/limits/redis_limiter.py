"""The Redis limiter: one GCRA state shared by every server that points at the same Redis.

The decision is one Lua script (EVALSHA through redis-py's registered Script, which loads it
again after a Redis restart), so the read, the decision and the write are atomic however many
servers ask at once. The time is Redis's TIME, not the caller's, so servers whose clocks
disagree still share one timeline.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from service.limits.base import LimiterUnavailable
from service.limits.gcra import MICROS, Decision

# service/limits/gcra.py:step, line for line (see its docstring). ARGV: cost, limit, charge
# ('1'/'0'), and optionally a time in microseconds that replaces Redis's TIME: only tests pass
# it, to run the gcra.py scenarios through this script.
GCRA_LUA = """
local now
if ARGV[4] and ARGV[4] ~= '' then
  now = tonumber(ARGV[4])
else
  local t = redis.call('TIME')
  now = tonumber(t[1]) * 1000000 + tonumber(t[2])
end
local cost = tonumber(ARGV[1])
local limit = tonumber(ARGV[2])
local window = 60 * 1000000.0
local interval = window / limit
local slack = math.min(1000.0, interval / 2)
if cost > limit then cost = limit end
local tat = now
local stored = redis.call('GET', KEYS[1])
if stored then tat = math.max(tonumber(stored), now) end
local new_tat = tat + cost * interval
local allow_at = new_tat - window
local allowed, ahead, retry_after
if allow_at - now <= slack then
  allowed, ahead, retry_after = 1, new_tat - now, 0
  if ARGV[3] == '1' and cost > 0 then
    redis.call('SET', KEYS[1], string.format('%.17g', new_tat),
               'PX', math.max(1, math.ceil(ahead / 1000)))
  end
else
  allowed, ahead = 0, tat - now
  retry_after = math.max(1, math.ceil((allow_at - now - slack) / 1000000))
end
local remaining = math.max(0, math.min(limit, math.floor((window - ahead + slack) / interval)))
local reset = math.ceil((now + ahead) / 1000000)
return {allowed, remaining, reset, retry_after}
"""

DEFAULT_PREFIX = "clearbg:ratelimit:"


class RedisLimiter:
    """GCRA in Redis. Short socket timeouts: a limiter that hangs would hang every request, so
    an unreachable Redis becomes `LimiterUnavailable` (the caller's 503) within about a second.
    """

    def __init__(
        self,
        url: str,
        prefix: str = DEFAULT_PREFIX,
        timeout_s: float = 1.0,
        clock: Callable[[], float] | None = None,
    ) -> None:
        self._redis = aioredis.Redis.from_url(
            url, socket_connect_timeout=timeout_s, socket_timeout=timeout_s
        )
        self._script = self._redis.register_script(GCRA_LUA)
        self._prefix = prefix
        self._clock = clock  # tests only; None means Redis's own TIME

    async def acquire(
        self, key: str, cost: int, limit_per_minute: int, *, charge: bool = True
    ) -> Decision:
        if limit_per_minute < 1:
            raise ValueError(f"limit must be at least 1 per minute, got {limit_per_minute}")
        if cost < 0:
            raise ValueError(f"cost must not be negative, got {cost}")
        args: list[object] = [cost, limit_per_minute, "1" if charge else "0"]
        if self._clock is not None:
            args.append(repr(self._clock() * MICROS))
        try:
            allowed, remaining, reset, retry_after = await self._script(
                keys=[self._prefix + key], args=args
            )
        except (RedisError, OSError, asyncio.TimeoutError) as exc:
            raise LimiterUnavailable(f"rate-limit store unreachable: {type(exc).__name__}") from exc
        return Decision(bool(allowed), limit_per_minute, int(remaining), int(reset), int(retry_after))

    async def aclose(self) -> None:
        await self._redis.aclose()

"""GCRA (generic cell rate algorithm): one stored number per key, the theoretical arrival time.

Why GCRA rather than a fixed window: a fixed window lets a client spend its whole minute at the
end of one window and again at the start of the next (twice the limit within seconds). GCRA is
a leaky bucket kept as a single timestamp: each unit of cost pushes the key's theoretical
arrival time (TAT) `60 s / limit` into the future, and a request passes while its TAT stays
within one minute of now. So a fresh key may spend its full minute at once (burst = limit), and
after that capacity comes back smoothly, one unit every `60 / limit` seconds, never in steps.
The state is a time, i.e. the share of the minute already used, so when an account's limit
changes, a full bucket stays full and refills at the new pace.

Times are float microseconds. `step` is the one definition of the arithmetic; the Redis
backend's Lua script (redis_limiter.py) repeats it line for line because the read-decide-write
must be atomic inside Redis, and tests/service/test_limits_redis.py runs one scenario table
through both to keep them equal. Both are IEEE doubles doing the same operations in the same
order, so they agree to the bit.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

MICROS = 1_000_000.0
WINDOW_US = 60 * MICROS  # limits are per minute, and the burst is one minute's worth
MAX_SLACK_US = 1000.0


@dataclass(frozen=True)
class Decision:
    """What one acquire decided, with everything the rate-limit headers need.

    remaining: how many cost-1 requests could still pass right now (after this one, if allowed).
    reset: Unix seconds (rounded up) at which the key's bucket is full again.
    retry_after: whole seconds (>= 1) to wait before this same request could pass; 0 if allowed.
    """

    allowed: bool
    limit: int
    remaining: int
    reset: int
    retry_after: int


@dataclass(frozen=True)
class Step:
    decision: Decision
    tat_us: float | None  # the key's new TAT to store; None: leave the stored value as it was


def cost_for_pixels(width: int, height: int) -> int:
    """A request's cost: its input megapixels rounded up, at least 1 (remove.bg's table)."""
    return max(1, -(-(width * height) // 1_000_000))


def step(tat_us: float | None, now_us: float, cost: int, limit: int, charge: bool = True) -> Step:
    """Decide one request of `cost` units against `limit` units per minute.

    `charge=False` asks "would it pass now?" and stores nothing: the service's cheap gate
    before it downloads or decodes anything for a key whose bucket is already empty.

    `cost` above `limit` is charged as `limit`: such a request would otherwise never pass, while
    the documented table (50 MP at 10/min) only promises it a full bucket. Cost 0 is a peek: it
    reports the state (always allowed) and stores nothing.
    Floating-point noise (60 s / 7 is inexact) is absorbed by a slack of at most 1 ms (half an
    interval for limits above 30000/min), so `limit` back-to-back requests always fit exactly.
    """
    if limit < 1:
        raise ValueError(f"limit must be at least 1 per minute, got {limit}")
    if cost < 0:
        raise ValueError(f"cost must not be negative, got {cost}")
    interval = WINDOW_US / limit
    slack = min(MAX_SLACK_US, interval / 2)
    cost = min(cost, limit)
    tat = now_us if tat_us is None else max(tat_us, now_us)
    new_tat = tat + cost * interval
    allow_at = new_tat - WINDOW_US
    if allow_at - now_us <= slack:
        allowed, ahead, retry_after = True, new_tat - now_us, 0
    else:
        allowed, ahead = False, tat - now_us
        retry_after = max(1, math.ceil((allow_at - now_us - slack) / MICROS))
    remaining = max(0, min(limit, math.floor((WINDOW_US - ahead + slack) / interval)))
    reset = math.ceil((now_us + ahead) / MICROS)
    stored = new_tat if allowed and charge and cost > 0 else None
    return Step(Decision(allowed, limit, remaining, reset, retry_after), stored)

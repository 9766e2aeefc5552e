"""The in-process limiter: the default for a single server (no Redis configured)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from service.limits.gcra import MICROS, Decision, step


def _wall_clock() -> float:
    return time.time()


class InProcessLimiter:
    """GCRA state in a dict. A plain lock (never held across an await) makes each decision
    atomic for asyncio tasks and threads alike; the step is a few float operations.

    `clock` returns Unix seconds; tests inject a fake one. Keys whose TAT has passed are
    equivalent to absent ones and are dropped now and then so the dict stays bounded by the
    keys active within the last minute.
    """

    PRUNE_EVERY = 1024

    def __init__(self, clock: Callable[[], float] = _wall_clock) -> None:
        self._clock = clock
        self._tats: dict[str, float] = {}
        self._lock = threading.Lock()
        self._writes = 0

    async def acquire(
        self, key: str, cost: int, limit_per_minute: int, *, charge: bool = True
    ) -> Decision:
        with self._lock:
            now_us = self._clock() * MICROS
            result = step(self._tats.get(key), now_us, cost, limit_per_minute, charge)
            if result.tat_us is not None:
                self._tats[key] = result.tat_us
                self._writes += 1
                if self._writes % self.PRUNE_EVERY == 0:
                    self._tats = {k: t for k, t in self._tats.items() if t > now_us}
            return result.decision

    async def aclose(self) -> None:
        return None

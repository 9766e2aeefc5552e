"""Which failures are retried and how long to wait: the one rule both clients (and the CLI) use.

Retried: 408, 409 idempotency_in_flight, 429, 500, 502, 503, 504 and transport failures (no
answer). The wait is the answer's Retry-After (seconds or an HTTP date) when it has one, else
exponential backoff with jitter (0.5 s * 2^n, at most 8 s). Retrying a removal is safe because
every attempt of one call carries the same Idempotency-Key: it is charged at most once.
"""

from __future__ import annotations

import email.utils
import random
import threading
import time
from typing import Optional, Union

from clearbg.errors import APIConnectionError, APIError, ClearBGError

RETRY_STATUSES = frozenset({408, 429, 500, 502, 503, 504})
BACKOFF_BASE_S = 0.5
BACKOFF_MAX_S = 8.0


def parse_retry_after(value: Optional[str], now: Optional[float] = None) -> Optional[float]:
    """Retry-After as seconds from now: a number of seconds, or an HTTP date; None if absent or
    unreadable."""
    if value is None or not value.strip():
        return None
    text = value.strip()
    try:
        return max(0.0, float(text))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if when is None:
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


def is_retryable(error: ClearBGError) -> bool:
    if isinstance(error, APIConnectionError):
        return True
    if isinstance(error, APIError):
        return error.status in RETRY_STATUSES or (error.status == 409 and error.code == "idempotency_in_flight")
    return False


def backoff(attempt: int) -> float:
    """The wait before retry number `attempt` + 1 when the server named none."""
    base = min(BACKOFF_MAX_S, BACKOFF_BASE_S * (2 ** attempt))
    return base * (1 - 0.25 * random.random())


def retry_delay(error: Union[APIError, APIConnectionError], attempt: int) -> float:
    retry_after = getattr(error, "retry_after", None)
    return retry_after if retry_after is not None else backoff(attempt)


class Gate:
    """One pause shared by threads (the CLI's workers): a Retry-After seen by one holds them all
    until it has passed, so they do not keep knocking at a limit they all share."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._open_at = 0.0

    def hold(self, seconds: float) -> None:
        with self._lock:
            self._open_at = max(self._open_at, time.monotonic() + seconds)

    def wait(self) -> None:
        while True:
            with self._lock:
                left = self._open_at - time.monotonic()
            if left <= 0:
                return
            time.sleep(left)

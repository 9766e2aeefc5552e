"""Which failures are retried and how long to wait: the one rule both clients (and the CLI) use.

Retried: 408, 409 idempotency_in_flight, 429, 500, 502, 503, 504 and transport failures (no
answer). The wait is the answer's Retry-After (seconds or an HTTP date) when it has one, else
exponential backoff with jitter (0.5 s * 2^n, at most 8 s). Retrying a removal is safe because
every attempt of one call carries the same Idempotency-Key: it is charged at most once.
"""

from __future__ import annotations

import email.utils
import itertools
import logging
import random
import threading
import time
from typing import Dict, Optional, Set, Union

from clearbg.errors import APIConnectionError, APIError, ClearBGError

log = logging.getLogger("clearbg")

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


def delay_or_raise(error: ClearBGError, number: int, retries: int, rewindable: bool) -> float:
    """The wait before retrying after `error` (retry number `number` + 1 of `retries`), or raises
    it: out of retries, not retryable, or an upload that cannot be sent again."""
    if number >= retries or not is_retryable(error):
        raise error
    if not rewindable:
        log.warning("clearbg: not retrying (%s): the upload was a non-seekable stream", error)
        raise error
    delay = retry_delay(error, number)  # type: ignore[arg-type]
    log.info("clearbg: retrying in %.1f s after %s", delay, error)
    return delay


class Stopped(Exception):
    """The gate was stopped (the CLI's Ctrl-C) while a call waited to try again: it gives up
    without another attempt. A call only waits after an attempt that was not charged."""


class Gate:
    """One pause shared by threads (the CLI's workers): a Retry-After seen by one holds them all
    until it has passed, so they do not keep knocking at a limit they all share. Then calls go one
    at a time, oldest first, until one gets through, so a call the limit refused is not overtaken
    again and again by newer ones (a batch would starve one photo). stop() ends every wait at
    once: a Ctrl-C does not sit out a minute of Retry-After or backoff."""

    def __init__(self) -> None:
        self._changed = threading.Condition()
        self._stopped = False
        self._open_at = 0.0
        self._limited = False  # a Retry-After was met and no call has got through since
        self._passing: Optional[int] = None  # the one call let through while limited
        self._ready: Set[int] = set()  # calls not on the wire now, by age
        self._holds = 0  # Retry-Afters met so far
        self._sent: Dict[int, int] = {}  # ticket -> holds when its attempt went out
        self._tickets = itertools.count()

    def join(self) -> int:
        """A new call: its ticket, older than every later call's."""
        with self._changed:
            ticket = next(self._tickets)
            self._ready.add(ticket)
            return ticket

    def leave(self, ticket: int) -> None:
        with self._changed:
            self._ready.discard(ticket)
            self._sent.pop(ticket, None)
            if self._passing == ticket:
                self._passing = None
            self._changed.notify_all()

    def hold(self, seconds: float) -> None:
        with self._changed:
            self._open_at = max(self._open_at, time.monotonic() + seconds)
            self._limited = True
            self._holds += 1

    def answered(self, ticket: int, through: bool) -> None:
        """The attempt of `ticket` has its answer; through: it was not held back by a Retry-After.
        Only an attempt sent after the last Retry-After shows the limit has room again."""
        with self._changed:
            self._ready.add(ticket)
            if self._passing == ticket:
                self._passing = None
            if through and self._sent.get(ticket) == self._holds:
                self._limited = False
            self._changed.notify_all()

    def stop(self) -> None:
        with self._changed:
            self._stopped = True
            self._changed.notify_all()

    def pause(self, seconds: float) -> None:
        """A call's own backoff (no Retry-After to share), cut short by stop()."""
        until = time.monotonic() + seconds
        with self._changed:
            while not self._stopped and time.monotonic() < until:
                self._changed.wait(until - time.monotonic())
            if self._stopped:
                raise Stopped()

    def wait(self, ticket: int) -> None:
        with self._changed:
            while True:
                if self._stopped:
                    raise Stopped()
                left = self._open_at - time.monotonic()
                if left > 0:
                    self._changed.wait(left)
                    continue
                if not self._limited:
                    break
                if self._passing is None and ticket == min(self._ready):
                    self._passing = ticket
                    break
                self._changed.wait()
            self._ready.discard(ticket)
            self._sent[ticket] = self._holds

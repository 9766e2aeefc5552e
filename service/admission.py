"""Admission by time: a call joins the engine's queue only if it can expect to start soon.

A count of queued calls says nothing about how long the last one waits: 18 calls of 4.5 s each
on a slow CPU is 80 s, past the gateway's timeouts, while 18 previews on a fast one is a second.
So the server keeps a running estimate of its own service time as a function of the photo's
megapixels (`ServiceTimes`: seconds = base + per_mp * MP, fitted to recent calls), simulates
its workers draining the calls already running and queued (`expected_start`), and admits a new
call only when its expected start is within `max_wait_s`. A refused call gets 503 `overloaded`
with `Retry-After`: the seconds until the queue should have drained enough for it to be
admitted. Admitted calls start in arrival order; one whose caller goes away while it waits
(the task is cancelled) leaves the queue without ever reaching the engine.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import heapq
import math
import time
from collections.abc import AsyncIterator, Callable
from concurrent.futures import Executor
from dataclasses import dataclass, field

from service import metrics
from service.errors import ApiError
from service.logging import get_logger

log = get_logger(__name__)


class ServiceTimes:
    """seconds ≈ base + per_mp * megapixels, least squares over the last `window` calls (as they
    ran: two calls side by side each take longer, and that is the time a worker is busy)."""

    def __init__(self, base_s: float = 1.0, per_mp_s: float = 0.05, window: int = 64):
        self.base_s, self.per_mp_s = base_s, per_mp_s
        self._seen: collections.deque[tuple[float, float]] = collections.deque(maxlen=window)

    def seed(self, base_s: float) -> None:
        """Before any call is measured: what the warm-up took (a net inference, the bulk of one)."""
        if not self._seen and base_s > 0:
            self.base_s = base_s

    def observe(self, megapixels: float, seconds: float) -> None:
        self._seen.append((max(0.0, megapixels), max(0.0, seconds)))
        xs = [x for x, _ in self._seen]
        ys = [y for _, y in self._seen]
        n, mean_x, mean_y = len(xs), sum(xs) / len(xs), sum(ys) / len(ys)
        spread = sum((x - mean_x) ** 2 for x in xs)
        if n >= 3 and spread > 0.25 * n:  # sizes varied enough to tell the slope from the base
            slope = sum((x - mean_x) * (y - mean_y) for x, y in zip(xs, ys)) / spread
            self.per_mp_s = max(0.0, slope)
        self.base_s = max(0.0, mean_y - self.per_mp_s * mean_x)

    def estimate(self, megapixels: float) -> float:
        return self.base_s + self.per_mp_s * max(0.0, megapixels)

    @property
    def observed(self) -> int:
        return len(self._seen)


def overloaded(retry_after_s: float) -> ApiError:
    seconds = max(1, math.ceil(retry_after_s))
    return ApiError(503, "overloaded", f"The server is busy; try again in {seconds} s.",
                    headers=[("retry-after", str(seconds))])


@dataclass(eq=False)
class _Call:
    expected_s: float
    megapixels: float
    started_at: float | None = None
    turn: asyncio.Future | None = field(default=None, repr=False)


@dataclass(eq=False)
class _Promise:
    """A refused call's Retry-After: the place it was told it would have when it comes back."""

    due: float
    expected_s: float


# A promise no call came back for is forgotten this long after it fell due.
PROMISE_GRACE_S = 2.0


class Admission:
    """FIFO admission to `workers` engine slots, bounded by expected waiting time.

    A refused call is told when to come back, and that time is kept for it: the place it would
    take is counted in every later newcomer's expected start (so those are told to come later
    still), and the first call arriving once it falls due takes it. Honoured, a Retry-After is
    a place in the queue, not a lottery ticket against clients that never wait."""

    def __init__(self, workers: int, max_wait_s: float, times: ServiceTimes | None = None,
                 max_queued: int | None = None, clock: Callable[[], float] = time.monotonic):
        self.workers, self.max_wait_s = workers, max_wait_s
        self.times = times or ServiceTimes()
        self.max_queued = max_queued  # calls beyond the workers' (their uploads held in memory)
        self.clock = clock
        self._running: list[_Call] = []
        self._waiting: collections.deque[_Call] = collections.deque()
        self._promises: collections.deque[_Promise] = collections.deque()
        self._open_calls = 0  # admitted and not yet answered: a call out of the engine may still be delivering
        self.closed = False

    # -- what a new call can expect -------------------------------------------------------------

    def _expected_start(self, promises) -> float:
        """When a worker should be free for a newcomer (seconds from now), after the calls
        running and waiting, then the `promises` from their due times, have taken their turns."""
        now = self.clock()
        slots = [max(0.0, c.expected_s - (now - (c.started_at or now))) for c in self._running]
        slots += [0.0] * max(0, self.workers - len(slots))
        heapq.heapify(slots)
        for call in self._waiting:
            heapq.heappush(slots, heapq.heappop(slots) + call.expected_s)
        for promise in promises:
            heapq.heappush(slots, max(heapq.heappop(slots), promise.due - now) + promise.expected_s)
        return slots[0]

    def expected_start(self) -> float:
        return self._expected_start(self._promises)

    @property
    def depth(self) -> tuple[int, int]:
        return len(self._running), len(self._waiting)

    # -- admitting and running ------------------------------------------------------------------

    def _decide(self, megapixels: float) -> None:
        if self.closed:
            metrics.record_refused("shutting_down")
            raise ApiError(503, "shutting_down", "The server is shutting down; try again shortly.",
                           headers=[("retry-after", "1")])
        now = self.clock()
        while self._promises and self._promises[0].due + PROMISE_GRACE_S < now:
            self._promises.popleft()  # nobody came back for it
        held = len(self._running) + len(self._waiting)
        full = self.max_queued is not None and held >= self.workers + self.max_queued
        ripe = self._promises[0] if self._promises and self._promises[0].due <= now else None
        if ripe is not None and not full:
            # The earliest promise: only the calls already queued are ahead of it.
            if self._expected_start(()) <= self.max_wait_s:
                self._promises.remove(ripe)
                return
        wait = self.expected_start()
        if wait <= self.max_wait_s and not full:
            return
        # Come back when the queue ahead, promises included, should let this call start in time.
        retry = max(1, math.ceil(max(wait - self.max_wait_s, self.times.estimate(megapixels) if full else 0.0)))
        self._promises.append(_Promise(now + retry, self.times.estimate(megapixels)))
        log.info("overloaded", expected_start_s=round(wait, 2), running=len(self._running),
                 waiting=len(self._waiting), promised=len(self._promises), retry_after_s=retry)
        metrics.record_refused("overloaded")
        raise overloaded(retry)

    @contextlib.asynccontextmanager
    async def admit(self, megapixels: float) -> AsyncIterator["Ticket"]:
        """Joins the queue (taking a place promised to a call that fell due, if any), or raises
        503 `overloaded` at once. The ticket's `run` waits for the call's turn; leaving the block
        (done, failed or cancelled) gives the place up."""
        self._decide(megapixels)
        call = _Call(self.times.estimate(megapixels), megapixels)
        log.info("queued", expected_start_s=round(self._expected_start(()), 2), running=len(self._running),
                 waiting=len(self._waiting))
        self._waiting.append(call)
        self._open_calls += 1
        metrics.record_admitted()
        self._changed()
        try:
            yield Ticket(self, call)
        finally:
            self._open_calls -= 1
            self._leave(call)

    def _leave(self, call: _Call) -> None:
        """Gives the call's place up (waiting or in the engine) and starts the next; twice is harmless."""
        if call in self._waiting:
            self._waiting.remove(call)
        if call in self._running:
            self._running.remove(call)
        self._wake()
        self._changed()

    def _changed(self) -> None:
        metrics.record_queue(len(self._running), len(self._waiting))

    def _wake(self) -> None:
        """Starts waiting calls, first come first served, while workers are free."""
        while len(self._running) < self.workers:
            nxt = next((c for c in self._waiting if c.turn is not None and not c.turn.done()), None)
            if nxt is None:
                return
            self._waiting.remove(nxt)
            self._running.append(nxt)
            nxt.started_at = self.clock()
            nxt.turn.set_result(None)
            self._changed()

    async def _turn(self, call: _Call) -> None:
        call.turn = asyncio.get_running_loop().create_future()
        self._wake()
        await call.turn

    def close(self) -> list[_Call]:
        """Shutting down: no new calls; those still waiting are refused (503, their credit given
        back by their own unwinding). Returns the calls that were waiting."""
        self.closed = True
        dropped = list(self._waiting)
        for call in dropped:
            if call.turn is not None and not call.turn.done():
                metrics.record_refused("shutting_down")
                call.turn.set_exception(ApiError(503, "shutting_down", "The server is shutting down; try again shortly.",
                                                 headers=[("retry-after", "1")]))
        return dropped

    async def drained(self) -> None:
        while self._open_calls:
            await asyncio.sleep(0.05)


class Ticket:
    def __init__(self, admission: Admission, call: _Call):
        self._admission, self._call = admission, call

    async def run(self, executor: Executor, fn, *args):
        """Waits for this call's turn, then runs fn(*args) on `executor`; the time it took
        teaches the estimate. Cancelled while waiting: fn never runs."""
        admission = self._admission
        queued = admission.clock()
        await admission._turn(self._call)
        started = admission.clock()
        log.info("engine_start", waited_s=round(started - queued, 3), expected_s=round(self._call.expected_s, 3))
        metrics.record_queue_wait(started - queued)
        try:
            result = await asyncio.get_running_loop().run_in_executor(executor, fn, *args)
        finally:
            metrics.record_inference(admission.clock() - started)
            # The worker is free once the engine is done: the caller's delivery and charge that
            # follow are not engine time, and a slot held through them made the queue wait longer
            # than the estimate it was admitted on.
            admission._leave(self._call)
        # Only completed work teaches the estimate: a file refused in a millisecond would not, nor
        # would a call answered from the matte cache (it would promise new photos a start too soon).
        if getattr(result, "net_ran", True):
            admission.times.observe(self._call.megapixels, admission.clock() - started)
        return result

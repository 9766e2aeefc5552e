"""Admission by time (service/admission.py), with a fake clock and work that waits on events."""

from __future__ import annotations

import asyncio
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

from service.admission import PROMISE_GRACE_S, Admission, ServiceTimes
from service.errors import ApiError


class Clock:
    def __init__(self):
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_service_times_learn_a_base_and_a_slope():
    times = ServiceTimes(base_s=1.0, per_mp_s=0.0)
    times.seed(0.4)
    assert times.estimate(1) == pytest.approx(0.4)
    for mp in (1, 4, 12, 1, 4, 12):
        times.observe(mp, 0.3 + 0.05 * mp)
    assert times.base_s == pytest.approx(0.3, abs=1e-6) and times.per_mp_s == pytest.approx(0.05, abs=1e-6)
    assert times.estimate(25) == pytest.approx(1.55, abs=1e-6)
    times.seed(9.0)  # a seed never overrides what was measured
    assert times.base_s == pytest.approx(0.3, abs=1e-6)


def test_same_sized_calls_teach_the_base_only():
    times = ServiceTimes(base_s=5.0, per_mp_s=0.1)
    for _ in range(10):
        times.observe(1.0, 2.0)
    assert times.estimate(1.0) == pytest.approx(2.0) and times.per_mp_s == 0.1


def _admission(workers=2, max_wait=10.0, base=4.0, clock=None, max_queued=None):
    return Admission(workers, max_wait, ServiceTimes(base_s=base, per_mp_s=0.0), max_queued=max_queued,
                     clock=clock or Clock())


def test_the_expected_start_simulates_the_workers_draining_the_queue():
    async def scenario():
        clock = Clock()
        adm = _admission(workers=2, base=4.0, clock=clock)
        assert adm.expected_start() == 0.0
        places = [adm.admit(1.0) for _ in range(5)]
        for place in places:
            await place.__aenter__()
        # five 4 s calls waiting on two workers (0-4-8-12 and 0-4-8): the sixth starts at 8 s
        assert adm.expected_start() == pytest.approx(8.0)
        clock.now += 3  # nothing started yet: waiting calls do not age
        assert adm.expected_start() == pytest.approx(8.0)
        for place in places:
            await place.__aexit__(None, None, None)
        assert adm.expected_start() == 0.0

    asyncio.run(scenario())


def test_a_call_that_cannot_start_in_time_is_refused_with_the_time_to_come_back():
    async def scenario():
        adm = _admission(workers=1, max_wait=10.0, base=4.0)
        held = [adm.admit(1.0) for _ in range(3)]  # 0, 4, 8 s: the fourth would start at 12 s
        for place in held:
            await place.__aenter__()
        with pytest.raises(ApiError) as caught:
            async with adm.admit(1.0):
                pass
        return caught.value

    error = asyncio.run(scenario())
    assert (error.status, error.code) == (503, "overloaded")
    assert dict(error.headers)["retry-after"] == "2"  # 12 s expected, 10 s allowed


def test_calls_run_in_arrival_order_and_one_cancelled_while_waiting_never_runs():
    ran: list[str] = []
    release = threading.Event()

    def work(name: str) -> str:
        ran.append(name)
        if name == "first":
            release.wait(5)
        return name

    async def scenario():
        adm = _admission(workers=1, max_wait=60.0, base=0.1)
        pool = ThreadPoolExecutor(max_workers=1)

        async def call(name: str):
            async with adm.admit(1.0) as ticket:
                return await ticket.run(pool, work, name)

        first = asyncio.ensure_future(call("first"))
        await asyncio.sleep(0.05)
        gone = asyncio.ensure_future(call("gone"))
        later = [asyncio.ensure_future(call(n)) for n in ("second", "third")]
        await asyncio.sleep(0.05)
        assert adm.depth == (1, 3)
        gone.cancel()
        await asyncio.sleep(0.05)
        assert adm.depth == (1, 2)  # its place is given up at once
        release.set()
        results = await asyncio.gather(first, *later)
        with pytest.raises(asyncio.CancelledError):
            await gone
        pool.shutdown()
        return results

    assert asyncio.run(scenario()) == ["first", "second", "third"]
    assert ran == ["first", "second", "third"]  # "gone" never reached the engine


def test_a_call_answered_from_the_matte_cache_does_not_teach_the_service_time():
    """Its time is a fraction of a call that runs the net: learnt, it would let the next new
    photos in with a start promised too soon."""
    from engine.types import Box, ImageInfo, RemovalResult

    def result(net_ran: bool) -> RemovalResult:
        return RemovalResult(b"", "image/png", 1, 1, "other", Box(0, 0, 1, 1), ImageInfo(1, 1, "PNG"), net_ran=net_ran)

    async def scenario():
        adm = _admission(workers=1, base=4.0)
        pool = ThreadPoolExecutor(max_workers=1)
        for net_ran in (False, True, False):
            async with adm.admit(1.0) as ticket:
                await ticket.run(pool, result, net_ran)
        pool.shutdown()
        return adm.times.observed

    assert asyncio.run(scenario()) == 1


def test_the_next_call_starts_when_the_engine_is_done_not_when_the_caller_has_delivered():
    """A worker's place is the engine's: the delivery and charge after it are not engine time,
    and holding the place through them made queued calls wait past their expected start. Shutting
    down still waits for the delivery."""
    async def scenario():
        adm = _admission(workers=1, max_wait=60.0, base=0.1)
        pool = ThreadPoolExecutor(max_workers=1)
        done_delivering = asyncio.Event()
        order: list[str] = []

        async def call(name: str, deliver_until: asyncio.Event | None = None):
            async with adm.admit(1.0) as ticket:
                await ticket.run(pool, order.append, f"{name} in the engine")
                if deliver_until is not None:
                    await deliver_until.wait()  # the caller still delivering its answer
                order.append(f"{name} delivered")

        first = asyncio.ensure_future(call("first", done_delivering))
        await asyncio.sleep(0.02)
        second = asyncio.ensure_future(call("second"))
        await asyncio.wait_for(second, 5)  # ran while the first was still delivering
        draining = asyncio.ensure_future(adm.drained())
        await asyncio.sleep(0.1)
        assert not draining.done()  # the first call is out of the engine, not answered
        done_delivering.set()
        await first
        await asyncio.wait_for(draining, 5)
        pool.shutdown()
        return order

    assert asyncio.run(scenario()) == ["first in the engine", "second in the engine", "second delivered",
                                       "first delivered"]


def test_the_memory_cap_refuses_beyond_max_queued():
    async def scenario():
        adm = _admission(workers=1, max_wait=1000.0, base=0.1, max_queued=2)
        for _ in range(3):  # one for the worker, two queued
            await adm.admit(1.0).__aenter__()
        with pytest.raises(ApiError) as caught:
            await adm.admit(1.0).__aenter__()
        return caught.value

    assert asyncio.run(scenario()).code == "overloaded"


def test_closing_refuses_new_calls_and_those_still_waiting():
    release = threading.Event()

    async def scenario():
        adm = _admission(workers=1, max_wait=60.0, base=0.1)
        pool = ThreadPoolExecutor(max_workers=1)

        async def call():
            async with adm.admit(1.0) as ticket:
                return await ticket.run(pool, lambda: release.wait(5))

        running = asyncio.ensure_future(call())
        await asyncio.sleep(0.05)
        waiting = asyncio.ensure_future(call())
        await asyncio.sleep(0.05)
        adm.close()
        with pytest.raises(ApiError) as refused_new:
            await adm.admit(1.0).__aenter__()
        with pytest.raises(ApiError) as refused_waiting:
            await waiting
        release.set()
        assert await running is True  # the call in the engine finishes
        await adm.drained()
        pool.shutdown()
        return refused_new.value, refused_waiting.value

    new, waiting = asyncio.run(scenario())
    assert (new.status, new.code) == (503, "shutting_down") and waiting.code == "shutting_down"


def test_a_retry_after_is_a_place_kept_for_the_call_that_honours_it():
    async def scenario():
        clock = Clock()
        adm = _admission(workers=1, max_wait=10.0, base=4.0, clock=clock)
        places = [adm.admit(1.0) for _ in range(3)]
        for place in places:
            await place.__aenter__()

        def advance(seconds: float) -> None:
            """The fake engine: 4 s a call, one at a time, as estimated."""
            clock.now += seconds
            while adm._waiting or adm._running:
                if not adm._running:
                    call = adm._waiting.popleft()
                    call.started_at = clock.now if call.started_at is None else call.started_at
                    adm._running.append(call)
                call = adm._running[0]
                if clock.now - call.started_at < call.expected_s:
                    return
                adm._running.remove(call)
                if adm._waiting:
                    adm._waiting[0].started_at = call.started_at + call.expected_s

        async def refused_for() -> int:
            with pytest.raises(ApiError) as caught:
                async with adm.admit(1.0):
                    pass
            return int(dict(caught.value.headers)["retry-after"])

        advance(0)
        first = await refused_for()
        assert first == 2  # expected start 12 s, 10 allowed
        advance(1)
        later = await refused_for()  # a newcomer queues behind the promise, not beside it
        assert later >= first - 1 + 4
        advance(first - 1)  # the first one comes back when told
        async with adm.admit(1.0):  # and takes its place
            pass
        with pytest.raises(ApiError):
            async with adm.admit(1.0):  # while a third, arriving with it but promised nothing, is refused
                pass
        advance(PROMISE_GRACE_S + later + 12)  # the promised ones never came back: their places lapse
        async with adm.admit(1.0):
            pass

    asyncio.run(scenario())

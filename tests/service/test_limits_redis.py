"""The Redis limiter against the real Redis on 127.0.0.1:6379 (CLEARBG_TEST_REDIS_URL).

Skips locally when Redis is down, fails under CI=true / CLEARBG_REQUIRE_SERVICES=1
(tests/conftest_services.py). Each test has its own key prefix and deletes its keys.
"""

from __future__ import annotations

import asyncio
import os
import socket
import time
import uuid

import pytest
import redis

from service.limits import InProcessLimiter, LimiterUnavailable, RateLimits
from service.limits.redis_limiter import RedisLimiter
from tests.conftest_services import REDIS_START, require_service

REDIS_URL = os.environ.get("CLEARBG_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


class FakeClock:
    def __init__(self, now: float = 1_800_000_000.25) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def prefix():
    """A reachable Redis and a key prefix of this test's own, removed afterwards."""
    client = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=1, socket_timeout=1)
    require_service(f"Redis at {REDIS_URL}", client.ping, REDIS_START)
    prefix = f"clearbg-test:{uuid.uuid4().hex}:"
    yield prefix
    for key in client.scan_iter(match=prefix + "*"):
        client.delete(key)
    client.close()


def run(coro):
    return asyncio.run(coro)


# (seconds to advance the clock before the request, cost, limit per minute[, charge])
SCENARIO = (
    [(0, 1, 20)] * 21
    + [(2.999, 1, 20), (0.001, 1, 20), (0, 1, 20)]
    + [(60, 4, 20)] + [(0, 4, 20)] * 5
    + [(11, 4, 20), (1, 4, 20), (0, 0, 20)]
    + [(120, 1, 7)] + [(0, 1, 7)] * 7
    + [(8.571428, 1, 7), (0.000001, 1, 7), (0.5, 0, 7)]
    + [(200, 50, 20), (59.5, 25, 20), (0.5, 25, 20)]
    + [(100, 25, 500)] + [(0, 25, 500)] * 20
    + [(0.123456, 3, 333)] * 40
    + [(100, 1, 2, False)] * 3 + [(0, 2, 2), (0, 1, 2, False), (30, 1, 2, False), (0, 1, 2)]
)


async def _play(limiter, clock: FakeClock, key: str):
    out = []
    for advance, cost, limit, *charge in SCENARIO:
        clock.now += advance
        out.append(await limiter.acquire(key, cost, limit, charge=charge[0] if charge else True))
    return out


def test_lua_script_decides_exactly_like_gcra_step(prefix):
    """The same scenario through gcra.step (in process) and the Lua script: identical answers."""

    async def both():
        local_clock, redis_clock = FakeClock(), FakeClock()
        local = await _play(InProcessLimiter(local_clock), local_clock, "k")
        limiter = RedisLimiter(REDIS_URL, prefix=prefix, clock=redis_clock)
        try:
            remote = await _play(limiter, redis_clock, "k")
        finally:
            await limiter.aclose()
        return local, remote

    local, remote = run(both())
    assert remote == local
    # The scenario exercises both outcomes and several retry times, not just a trivial path.
    assert {d.allowed for d in local} == {True, False}
    assert len({d.retry_after for d in local if not d.allowed}) >= 3


def test_fake_clock_behaviour_through_redis(prefix):
    async def go():
        clock = FakeClock()
        limiter = RedisLimiter(REDIS_URL, prefix=prefix, clock=clock)
        try:
            unit = [await limiter.acquire("unit", 1, 20) for _ in range(21)]
            big = [await limiter.acquire("big", 4, 20) for _ in range(6)]
            clock.now += big[-1].retry_after
            after = await limiter.acquire("big", 4, 20)
        finally:
            await limiter.aclose()
        return unit, big, after

    unit, big, after = run(go())
    assert [d.allowed for d in unit] == [True] * 20 + [False]
    assert [d.remaining for d in unit] == list(range(19, -1, -1)) + [0]
    assert unit[-1].retry_after == 3
    assert [d.allowed for d in big] == [True] * 5 + [False]
    assert big[-1].retry_after == 12
    assert after.allowed


def test_real_time_counts_and_refill(prefix):
    """Redis's own clock: 60/min is one unit per second, so a short real wait refills one."""

    async def go():
        limiter = RedisLimiter(REDIS_URL, prefix=prefix)
        try:
            burst = [await limiter.acquire("k", 1, 60) for _ in range(61)]
            await asyncio.sleep(burst[-1].retry_after + 0.05)
            refilled = [await limiter.acquire("k", 1, 60) for _ in range(2)]
        finally:
            await limiter.aclose()
        return burst, refilled

    started = time.time()
    burst, refilled = run(go())
    assert sum(d.allowed for d in burst) == 60 and not burst[-1].allowed
    assert burst[-1].retry_after == 1
    assert started <= burst[0].reset - 1 <= time.time() + 2  # Redis time is near ours
    assert [d.allowed for d in refilled] == [True, False]


def test_two_servers_share_one_limit_exactly(prefix):
    """40 concurrent acquires from two limiters (two connection pools, as two servers would
    have) on one key with limit 20: exactly 20 pass."""

    async def go():
        a = RedisLimiter(REDIS_URL, prefix=prefix)
        b = RedisLimiter(REDIS_URL, prefix=prefix)
        try:
            decisions = await asyncio.gather(
                *((a if i % 2 else b).acquire("shared", 1, 20) for i in range(40))
            )
        finally:
            await a.aclose()
            await b.aclose()
        return decisions

    decisions = run(go())
    assert sum(d.allowed for d in decisions) == 20
    assert sorted(d.remaining for d in decisions if d.allowed) == list(range(20))


def test_keys_expire_once_the_bucket_is_full_again(prefix):
    async def go():
        limiter = RedisLimiter(REDIS_URL, prefix=prefix)
        try:
            await limiter.acquire("k", 4, 20)  # 12 s of the minute
            await limiter.acquire("peek", 0, 20)  # a peek writes nothing
        finally:
            await limiter.aclose()

    run(go())
    client = redis.Redis.from_url(REDIS_URL)
    try:
        assert 11_000 < client.pttl(prefix + "k") <= 12_000
        assert not client.exists(prefix + "peek")
    finally:
        client.close()


def test_rate_limits_namespaces_on_redis(prefix):
    async def go():
        limits = RateLimits(RedisLimiter(REDIS_URL, prefix=prefix), preview_ip_limit_per_minute=2)
        try:
            ip = [await limits.for_preview_ip("198.51.100.7") for _ in range(3)]
            key = await limits.for_key("198.51.100.7", 1, 2)
        finally:
            await limits.aclose()
        return ip, key

    ip, key = run(go())
    assert [d.allowed for d in ip] == [True, True, False]
    assert key.allowed
    client = redis.Redis.from_url(REDIS_URL)
    try:
        names = sorted(k.decode() for k in client.scan_iter(match=prefix + "*"))
    finally:
        client.close()
    assert [n[len(prefix):].split(":")[0] for n in names] == ["ip", "key"]
    assert not any("198.51.100.7" in n for n in names)


def test_unreachable_redis_is_limiter_unavailable_quickly():
    with socket.socket() as s:  # a port that was free a moment ago: nothing listens there
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]

    async def go():
        limiter = RedisLimiter(f"redis://127.0.0.1:{port}/0", timeout_s=0.5)
        try:
            await limiter.acquire("k", 1, 20)
        finally:
            await limiter.aclose()

    started = time.monotonic()
    with pytest.raises(LimiterUnavailable):
        run(go())
    assert time.monotonic() - started < 5


def test_services_rule_skips_locally_and_fails_in_ci(monkeypatch):
    from tests.conftest_services import services_required

    def down():
        raise ConnectionRefusedError("nothing listens")

    for name in ("CI", "CLEARBG_REQUIRE_SERVICES"):
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(pytest.skip.Exception, match="redis-server --daemonize yes"):
        require_service("Redis", down, REDIS_START)
    require_service("Redis", lambda: True, REDIS_START)  # reachable: nothing happens
    for env in ({"CI": "true"}, {"CLEARBG_REQUIRE_SERVICES": "1"}):
        assert services_required(env)
        with monkeypatch.context() as m:
            for name, value in env.items():
                m.setenv(name, value)
            with pytest.raises(pytest.fail.Exception, match="Start it with: redis-server"):
                require_service("Redis", down, REDIS_START)
    assert not services_required({"CI": "false", "CLEARBG_REQUIRE_SERVICES": "0"})

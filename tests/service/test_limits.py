"""GCRA arithmetic, the in-process limiter, the per-IP preview limit and the headers, on a
fake clock (deterministic: no sleeps)."""

from __future__ import annotations

import asyncio
import math
import threading

import pytest

from service.limits import (
    Decision,
    InProcessLimiter,
    RateLimits,
    cost_for_pixels,
    limiter_from_url,
    rate_limit_metadata,
)
from service.limits.gcra import step

T0 = 1_800_000_000.25  # a Unix time with a fraction, so rounding of `reset` is exercised


class FakeClock:
    def __init__(self, now: float = T0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def run(coro):
    return asyncio.run(coro)


async def _acquire_n(limiter, key: str, cost: int, limit: int, n: int) -> list[Decision]:
    return [await limiter.acquire(key, cost, limit) for _ in range(n)]


@pytest.mark.parametrize(
    ("width", "height", "cost"),
    [(625, 400, 1), (1000, 1000, 1), (1000, 1001, 2), (1600, 1200, 2), (2500, 1600, 4),
     (4000, 2500, 10), (5000, 5000, 25), (8000, 6250, 50), (1, 1, 1)],
)
def test_cost_is_megapixels_rounded_up_at_least_one(width, height, cost):
    assert cost_for_pixels(width, height) == cost


def test_documented_table_500_per_minute():
    # 1 MP 500/min, 2 MP 250, 4 MP 125, 10 MP 50, 25 MP 20, 50 MP 10: at once from a fresh key.
    for mp, per_minute in [(1, 500), (2, 250), (4, 125), (10, 50), (25, 20), (50, 10)]:
        limiter = InProcessLimiter(FakeClock())
        decisions = run(_acquire_n(limiter, "k", mp, 500, per_minute + 1))
        assert all(d.allowed for d in decisions[:per_minute]), mp
        assert not decisions[-1].allowed, mp


def test_twenty_unit_requests_then_denied_remaining_counts_down():
    limiter = InProcessLimiter(FakeClock())
    decisions = run(_acquire_n(limiter, "k", 1, 20, 21))
    assert [d.allowed for d in decisions] == [True] * 20 + [False]
    assert [d.remaining for d in decisions] == list(range(19, -1, -1)) + [0]
    assert all(d.limit == 20 for d in decisions)
    assert [d.retry_after for d in decisions[:20]] == [0] * 20
    # 60 s / 20 = 3 s until one unit has leaked out.
    assert decisions[-1].retry_after == 3


def test_four_megapixel_requests_five_times_then_denied():
    limiter = InProcessLimiter(FakeClock())
    decisions = run(_acquire_n(limiter, "k", 4, 20, 6))
    assert [d.allowed for d in decisions] == [True] * 5 + [False]
    assert [d.remaining for d in decisions] == [16, 12, 8, 4, 0, 0]
    assert decisions[-1].retry_after == 12  # four units at 3 s each


def test_retry_after_is_enough_and_one_second_less_is_not():
    clock = FakeClock()
    limiter = InProcessLimiter(clock)
    run(_acquire_n(limiter, "k", 4, 20, 5))
    denied = run(limiter.acquire("k", 4, 20))
    assert not denied.allowed
    clock.advance(denied.retry_after - 1)
    assert not run(limiter.acquire("k", 4, 20)).allowed
    clock.advance(1)
    assert run(limiter.acquire("k", 4, 20)).allowed
    assert not run(limiter.acquire("k", 1, 20)).allowed  # that took the whole refill


def test_refill_is_smooth_one_unit_per_interval():
    clock = FakeClock()
    limiter = InProcessLimiter(clock)
    run(_acquire_n(limiter, "k", 1, 20, 20))
    for _ in range(10):  # at the limit's pace, every request passes and the next one doesn't
        clock.advance(3)
        assert run(limiter.acquire("k", 1, 20)).allowed
        assert not run(limiter.acquire("k", 1, 20)).allowed
    clock.advance(2.9)  # part of an interval refills nothing whole
    assert not run(limiter.acquire("k", 1, 20)).allowed


def test_idle_minute_restores_the_full_burst_but_no_more():
    clock = FakeClock()
    limiter = InProcessLimiter(clock)
    run(_acquire_n(limiter, "k", 1, 20, 20))
    clock.advance(3600)  # idle for long: the bucket holds one minute's worth, not an hour's
    decisions = run(_acquire_n(limiter, "k", 1, 20, 21))
    assert sum(d.allowed for d in decisions) == 20


def test_reset_is_when_the_bucket_is_full_again():
    clock = FakeClock()
    limiter = InProcessLimiter(clock)
    fresh = run(limiter.acquire("k", 0, 20))  # cost 0 peeks
    assert fresh.allowed and fresh.remaining == 20 and fresh.reset == math.ceil(T0)
    first = run(limiter.acquire("k", 4, 20))
    assert first.reset == math.ceil(T0 + 12)
    run(_acquire_n(limiter, "k", 4, 20, 4))
    denied = run(limiter.acquire("k", 1, 20))
    assert denied.reset == math.ceil(T0 + 60)
    clock.advance(60)
    assert run(limiter.acquire("k", 0, 20)).remaining == 20


def test_peek_charges_nothing():
    limiter = InProcessLimiter(FakeClock())
    for _ in range(50):
        run(limiter.acquire("k", 0, 20))
    assert sum(d.allowed for d in run(_acquire_n(limiter, "k", 1, 20, 21))) == 20


def test_cost_above_the_limit_needs_and_drains_a_full_bucket():
    clock = FakeClock()
    limiter = InProcessLimiter(clock)
    first = run(limiter.acquire("k", 50, 20))
    assert first.allowed and first.remaining == 0
    second = run(limiter.acquire("k", 50, 20))
    assert not second.allowed and second.retry_after == 60
    clock.advance(59)
    assert not run(limiter.acquire("k", 25, 20)).allowed
    clock.advance(1)
    assert run(limiter.acquire("k", 25, 20)).allowed


def test_keys_are_independent_and_a_new_limit_applies_at_its_own_pace():
    clock = FakeClock()
    limiter = InProcessLimiter(clock)
    run(_acquire_n(limiter, "a", 1, 20, 20))
    assert not run(limiter.acquire("a", 1, 20)).allowed
    assert run(limiter.acquire("b", 1, 20)).allowed
    # The state is the share of the minute used: a full bucket stays full when the account's
    # limit is raised, and then refills at the new pace (3 s = 25 units at 500/min).
    assert not run(limiter.acquire("a", 1, 500)).allowed
    clock.advance(3)
    assert sum(d.allowed for d in run(_acquire_n(limiter, "a", 1, 500, 26))) == 25


@pytest.mark.parametrize("limit", [1, 7, 13, 60, 333, 500, 4999, 120_000])
def test_exactly_limit_unit_requests_fit_at_once_for_awkward_limits(limit):
    # 60 s / 7 is not a whole number of microseconds: the float slack must absorb that.
    tat, allowed = None, 0
    for _ in range(limit + 1):
        result = step(tat, T0 * 1e6, 1, limit)
        allowed += result.decision.allowed
        tat = result.tat_us if result.tat_us is not None else tat
    assert allowed == limit


def test_sustained_rate_over_ten_minutes_matches_the_limit():
    # Hammering every 0.1 s for 10 minutes gets the burst plus 10 minutes' worth, no more.
    clock = FakeClock()
    limiter = InProcessLimiter(clock)
    allowed = 0
    for _ in range(6000):
        allowed += run(limiter.acquire("k", 1, 7)).allowed
        clock.advance(0.1)
    assert allowed in (7 + 70, 7 + 70 - 1)  # the last interval may not have completed


@pytest.mark.parametrize(("cost", "limit"), [(-1, 10), (1, 0)])
def test_bad_arguments_are_refused(cost, limit):
    with pytest.raises(ValueError):
        run(InProcessLimiter(FakeClock()).acquire("k", cost, limit))


def test_in_process_limiter_is_exact_under_threads():
    limiter = InProcessLimiter(FakeClock())
    results: list[bool] = []
    lock = threading.Lock()

    def worker():
        decisions = asyncio.run(_acquire_n(limiter, "k", 1, 100, 25))
        with lock:
            results.extend(d.allowed for d in decisions)

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(results) == 200 and sum(results) == 100


def test_in_process_limiter_is_exact_under_concurrent_tasks():
    limiter = InProcessLimiter(FakeClock())

    async def burst():
        return await asyncio.gather(*(limiter.acquire("k", 1, 20) for _ in range(40)))

    assert sum(d.allowed for d in run(burst())) == 20


def test_expired_keys_are_pruned():
    clock = FakeClock()
    limiter = InProcessLimiter(clock)
    for i in range(InProcessLimiter.PRUNE_EVERY - 1):
        run(limiter.acquire(f"old{i}", 1, 500))
    clock.advance(61)
    run(limiter.acquire("new", 1, 500))  # the PRUNE_EVERY-th write sweeps the expired keys
    assert list(limiter._tats) == ["new"]


def test_preview_ip_limit_is_per_ip_and_apart_from_key_limits():
    limits = RateLimits(InProcessLimiter(FakeClock()), preview_ip_limit_per_minute=3)
    ip_decisions = [run(limits.for_preview_ip("203.0.113.9")) for _ in range(4)]
    assert [d.allowed for d in ip_decisions] == [True, True, True, False]
    assert ip_decisions[-1].limit == 3 and ip_decisions[-1].retry_after == 20
    assert run(limits.for_preview_ip("203.0.113.10")).allowed  # another IP
    # A key whose text equals the IP has its own bucket (separate namespaces).
    assert run(limits.for_key("203.0.113.9", 1, 3)).allowed


def test_key_limit_through_rate_limits_stores_no_api_key():
    limiter = InProcessLimiter(FakeClock())
    limits = RateLimits(limiter)
    decisions = [run(limits.for_key("secret-key-123", 25, 500)) for _ in range(21)]
    assert sum(d.allowed for d in decisions) == 20
    assert not any("secret-key-123" in k for k in limiter._tats)


def test_preview_limit_must_be_positive():
    with pytest.raises(ValueError):
        RateLimits(InProcessLimiter(), preview_ip_limit_per_minute=0)


def test_limiter_from_url_picks_the_backend():
    assert isinstance(limiter_from_url(None), InProcessLimiter)
    assert isinstance(limiter_from_url("  "), InProcessLimiter)
    from service.limits.redis_limiter import RedisLimiter

    redis_limiter = limiter_from_url("redis://127.0.0.1:1/0")  # connects lazily
    assert isinstance(redis_limiter, RedisLimiter)
    run(redis_limiter.aclose())


def test_headers_on_success_and_on_denial():
    ok = Decision(allowed=True, limit=500, remaining=496, reset=1800000012, retry_after=0)
    assert rate_limit_metadata(ok) == (
        ("x-ratelimit-limit", "500"),
        ("x-ratelimit-remaining", "496"),
        ("x-ratelimit-reset", "1800000012"),
    )
    denied = Decision(allowed=False, limit=20, remaining=0, reset=1800000060, retry_after=12)
    assert rate_limit_metadata(denied)[-1] == ("retry-after", "12")
    assert all(name == name.lower() for name, _ in rate_limit_metadata(denied))


def test_errors_carry_status_code_and_headers():
    from service.errors import ApiError
    from service.limits import (
        limiter_unavailable,
        preview_ip_limited,
        rate_limited,
        with_rate_limit_headers,
    )

    denied = Decision(allowed=False, limit=20, remaining=0, reset=1800000060, retry_after=12)
    error = rate_limited(denied)
    assert (error.status, error.code) == (429, "rate_limit_exceeded")
    assert error.grpc_code().name == "RESOURCE_EXHAUSTED"
    assert dict(error.trailing_metadata())["retry-after"] == "12"
    assert dict(error.trailing_metadata())["x-ratelimit-limit"] == "20"

    ok = Decision(allowed=True, limit=500, remaining=499, reset=1800000001, retry_after=0)
    ip_error = preview_ip_limited(denied, rate_limit_metadata(ok))
    meta = dict(ip_error.trailing_metadata())
    assert (ip_error.status, ip_error.grpc_code().name) == (403, "PERMISSION_DENIED")
    assert meta["x-ratelimit-limit"] == "500" and meta["retry-after"] == "12"

    unavailable = limiter_unavailable()
    assert unavailable.status == 503 and dict(unavailable.headers)["retry-after"] == "1"

    later = with_rate_limit_headers(ApiError(503, "overloaded", "busy", headers=[("retry-after", "2")]), ok)
    assert dict(later.headers) == {
        "retry-after": "2",  # the error's own Retry-After is kept
        "x-ratelimit-limit": "500",
        "x-ratelimit-remaining": "499",
        "x-ratelimit-reset": "1800000001",
    }


def test_backend_down_becomes_a_503_api_error():
    from service.errors import ApiError
    from service.limits import LimiterUnavailable

    class DownLimiter:  # stands in for an unreachable Redis (the real one: test_limits_redis)
        async def acquire(self, key, cost, limit_per_minute, *, charge=True):
            raise LimiterUnavailable("down")

        async def aclose(self):
            return None

    limits = RateLimits(DownLimiter())
    for call in (limits.check_key("k", 500), limits.for_key("k", 1, 500), limits.for_preview_ip("192.0.2.1")):
        with pytest.raises(ApiError) as caught:
            run(call)
        assert caught.value.status == 503 and caught.value.code == "rate_limiter_unavailable"


@pytest.mark.parametrize(
    ("header", "peer", "ip"),
    [
        ("203.0.113.9", "ipv4:127.0.0.1:5000", "203.0.113.9"),  # the gateway's wins
        (" 2001:db8::1 ", None, "2001:db8::1"),
        (None, "ipv4:198.51.100.2:40000", "198.51.100.2"),
        ("", "ipv6:[2001:db8::2]:40000", "2001:db8::2"),
        (None, "unix:/tmp/s", "unix:/tmp/s"),
        (None, None, "unknown"),
    ],
)
def test_client_ip_prefers_the_gateway_header_then_the_peer(header, peer, ip):
    from service.limits import client_ip

    assert client_ip(header, peer) == ip


def test_check_key_charges_nothing_and_is_denied_once_the_bucket_is_empty():
    clock = FakeClock()
    limits = RateLimits(InProcessLimiter(clock))
    for _ in range(30):
        assert run(limits.check_key("k", 20)).allowed
    decisions = [run(limits.for_key("k", 4, 20)) for _ in range(5)]
    assert all(d.allowed for d in decisions)
    gate = run(limits.check_key("k", 20))
    assert not gate.allowed and gate.retry_after == 3 and gate.remaining == 0
    clock.advance(3)
    assert run(limits.check_key("k", 20)).allowed  # one unit is back...
    assert not run(limits.for_key("k", 4, 20)).allowed  # ...not the four this request costs


def _unreachable_redis_url() -> str:
    """A Redis URL where nothing listens (a port just freed): the connection is refused at once."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"redis://127.0.0.1:{port}/0"


@pytest.mark.parametrize("fail_open", [False, True])
def test_redis_down_follows_the_policy_and_is_counted(fail_open):
    """CLEARBG_RATE_LIMIT_ON_REDIS_DOWN: closed refuses with 503 rate_limiter_unavailable, open
    lets the call through with the full limit in its headers; both count the outage."""
    from service.errors import ApiError

    limits = RateLimits(limiter_from_url(_unreachable_redis_url()), fail_open=fail_open, clock=lambda: 1000.2)

    async def go():
        try:
            return await limits.for_key("k", 1, 30)
        finally:
            await limits.aclose()

    if fail_open:
        decision = asyncio.run(go())
        assert (decision.allowed, decision.limit, decision.remaining, decision.reset) == (True, 30, 30, 1001)
    else:
        with pytest.raises(ApiError) as caught:
            asyncio.run(go())
        assert (caught.value.status, caught.value.code) == (503, "rate_limiter_unavailable")
        assert dict(caught.value.headers)["retry-after"] == "1"
    assert limits.unavailable_total == 1

"""Rate limits end to end: the real Envoy, real `python -m service` processes, the real model.

Two servers behind one Envoy share the machine's PostgreSQL (a fresh schema) and its Redis
(CLEARBG_REDIS_URL), so the per-key GCRA state lives in Redis and the limit holds in total.
The counted calls come from accounts with no credits and no free calls at size=full: each
one is charged its rate units at the probe and then refused with a quick 402, so nothing
reaches the model; a refusal by the limiter is a 429. At 20 megapixel-images a minute one
unit comes back every 3 s, so every count below allows for the refill that the elapsed time
permits (the figures are exact when a burst takes under 3 s, as it does here).

- 40 concurrent 1 MP calls over both servers: 20 pass the limiter (402), 20 get 429; the
  402s' X-RateLimit-Remaining are 19..0 once each; every 429 has Remaining 0 and a
  Retry-After of 1-3 s; X-RateLimit-Reset is the minute the burst used.
- 4 MP calls one after another: 5 pass, Remaining 16, 12, 8, 4, 0, then 429 (in Redis, and
  in a lone server's in-process limiter).
- Retry-After honoured: sleeping it, the retry passes the limiter (402 with no credits, a
  real 200 with one credit), and a 4 MP call's first Retry-After is long enough for it.
"""

from __future__ import annotations

import io
import math
import os
import re
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal

import pytest
import requests
from PIL import Image

from service.launcher import Stack
from service.limits.redis_limiter import DEFAULT_PREFIX
from test_accounts import Deployment, small_photo, two_server_deployment
from tests.conftest_services import REDIS_START, require_service

pytestmark = pytest.mark.e2e

LIMIT = 20  # megapixel-images per minute for every account here
REFILL_S = 60 / LIMIT  # one unit back every 3 s
CALLS = 40
REDIS_URL = os.environ.get("CLEARBG_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
TIMEOUT_S = 120


def jpeg(width: int, height: int) -> bytes:
    """A flat picture of exactly width x height (the probe reads only its header)."""
    out = io.BytesIO()
    Image.new("RGB", (width, height), (90, 140, 60)).save(out, "JPEG", quality=75)
    return out.getvalue()


ONE_MP = jpeg(1000, 1000)
FOUR_MP = jpeg(2000, 2000)


def post(rest_url: str, key: str, image: bytes, **fields: str) -> requests.Response:
    return requests.post(
        rest_url + "/v1.0/removebg",
        files={"image_file": ("photo.jpg", image, "image/jpeg")},
        data={"size": "full", **fields},
        headers={"X-Api-Key": key},
        timeout=TIMEOUT_S,
    )


def code(response: requests.Response) -> str:
    return response.json()["errors"][0]["code"]


def limit_headers(response: requests.Response) -> tuple[int, int, int]:
    """(X-RateLimit-Limit, -Remaining, -Reset); every answer after authentication has them."""
    h = response.headers
    return int(h["x-ratelimit-limit"]), int(h["x-ratelimit-remaining"]), int(h["x-ratelimit-reset"])


def refused_by_credits(response: requests.Response) -> bool:
    """Passed the limiter, then 402 (the account has nothing to pay with)."""
    if response.status_code != 402:
        return False
    assert code(response) == "insufficient_credits", response.text
    assert "retry-after" not in response.headers
    return True


def refused_by_rate(response: requests.Response) -> bool:
    if response.status_code != 429:
        return False
    assert code(response) == "rate_limit_exceeded", response.text
    return True


def redis_keys_for(api_keys: list[str]) -> list[str]:
    """The limiter's Redis keys for these API keys (named after the hashed key by
    service/removal.py, digested by service/limits/policy.py)."""
    from service.limits.policy import _digest
    from service.storage.base import hash_key

    return [DEFAULT_PREFIX + "key:" + _digest(hash_key(key)) for key in api_keys]


@pytest.fixture(scope="module")
def redis_client():
    import redis

    client = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=3)
    require_service(f"Redis at {REDIS_URL}", client.ping, REDIS_START)
    yield client
    client.close()


@pytest.fixture(scope="module")
def redis_pair(tmp_path_factory, postgres_schema, free_port, redis_client) -> Iterator[Deployment]:
    """Two servers sharing one PostgreSQL schema and one Redis, behind one Envoy. Most calls here
    are answered 429 or 402 before they queue (service/credits.refuse_unpayable): a burst of them
    does not fill admission's queue."""
    workdir = tmp_path_factory.mktemp("e2e-redis")
    with two_server_deployment(
        "redis", workdir, postgres_schema(), free_port, CLEARBG_REDIS_URL=REDIS_URL
    ) as deployment:
        yield deployment


@pytest.fixture
def limited_account(redis_pair, redis_client) -> Callable[..., str]:
    """make(**balances) -> the key of a new account limited to LIMIT/min, with no bucket yet."""

    def make(**balances) -> str:
        _, key = redis_pair.account_with_key(rate_limit_per_minute=LIMIT, **balances)
        assert not redis_client.exists(*redis_keys_for([key])), "this key's bucket is already in use"
        return key

    return make


def served_per_server(stack: Stack) -> dict[str, int]:
    """Envoy's rq_total per server (admin /clusters)."""
    stats = requests.get(f"http://{stack.admin_address}/clusters", timeout=10).text
    return {
        m.group(1): int(m.group(2))
        for m in re.finditer(r"^grpc_server::[\d.]+:(\d+)::rq_total::(\d+)$", stats, re.MULTILINE)
    }


def test_concurrent_1mp_calls_over_two_servers_share_one_limit(redis_pair, limited_account):
    key = limited_account()
    before = served_per_server(redis_pair.stack)
    started_wall, started = time.time(), time.monotonic()
    with ThreadPoolExecutor(max_workers=CALLS) as pool:
        answers = list(pool.map(lambda _: post(redis_pair.rest_url, key, ONE_MP), range(CALLS)))
    took, ended_wall = time.monotonic() - started, time.time()
    after = served_per_server(redis_pair.stack)
    spread = {port: after.get(port, 0) - before.get(port, 0) for port in after}
    passed = [r for r in answers if refused_by_credits(r)]
    limited = [r for r in answers if refused_by_rate(r)]
    print(f"\n{CALLS} concurrent 1 MP calls in {took:.2f} s: {len(passed)} x 402, {len(limited)} x 429; per server {spread}")

    assert len(passed) + len(limited) == CALLS, sorted(r.status_code for r in answers)
    # Each server alone (in-process limits) would let 20 through; the shared bucket lets 20 in
    # total, plus what refilled while the burst ran.
    refilled = math.floor(took / REFILL_S)
    assert LIMIT <= len(passed) <= LIMIT + refilled, (len(passed), took)
    assert all(spread.get(str(port), 0) > 0 for port in redis_pair.grpc_ports), spread  # both servers served
    assert all(limit_headers(r)[0] == LIMIT for r in answers)
    remaining = sorted(limit_headers(r)[1] for r in passed)
    if refilled == 0:
        # Redis runs the decisions one at a time: each admitted call saw the bucket one unit
        # lower than the one before, whatever order the calls arrived in.
        assert remaining == list(range(LIMIT)), remaining
    else:
        assert remaining[0] == 0 and remaining[-1] == LIMIT - 1 and len(set(remaining)) >= LIMIT - refilled, remaining
    for response in limited:
        # A 1-unit call is refused only when not one unit is left, and one comes back within 3 s.
        assert limit_headers(response)[1] == 0
        assert 1 <= int(response.headers["retry-after"]) <= math.ceil(REFILL_S), response.headers["retry-after"]
        # Refused: the bucket holds (almost) a whole minute, so it is empty again ~60 s on.
        reset = limit_headers(response)[2]
        assert started_wall + 60 - REFILL_S <= reset <= math.ceil(ended_wall + 60), (reset, started_wall)

    # Retry-After honoured: sleep it, and the same 1 MP call passes the limiter.
    denied = post(redis_pair.rest_url, key, ONE_MP)
    assert refused_by_rate(denied), denied.status_code
    time.sleep(int(denied.headers["retry-after"]))
    retried = post(redis_pair.rest_url, key, ONE_MP)
    assert refused_by_credits(retried), (retried.status_code, retried.text)


def count_down_4mp(rest_url: str, key: str) -> None:
    """5 calls of 4 MP pass (16, 12, 8, 4, 0 left), the 6th is refused; then Retry-After is
    honoured as many times as the server asks, and the call passes again."""
    started = time.monotonic()
    seen: list[tuple[int, int]] = []
    for _ in range(5):
        response = post(rest_url, key, FOUR_MP)
        assert refused_by_credits(response), (response.status_code, response.text, seen)
        seen.append(limit_headers(response)[:2])
    took = time.monotonic() - started
    expected = [LIMIT - 4 * n for n in range(1, 6)]
    remaining = [left for _, left in seen]
    print(f"\n5 x 4 MP in {took:.2f} s: X-RateLimit-Remaining {remaining}")
    assert all(limit == LIMIT for limit, _ in seen)
    refilled = math.floor(took / REFILL_S)  # units that may have come back meanwhile
    assert all(e <= r <= e + refilled for e, r in zip(expected, remaining)), remaining
    if refilled == 0:
        assert remaining == expected

    denied = post(rest_url, key, FOUR_MP)
    assert refused_by_rate(denied), (denied.status_code, denied.text)
    assert limit_headers(denied)[1] <= 3  # fewer units left than this call costs

    # Honour Retry-After until the call passes; the waits together are what 4 units need.
    waited, tries = 0, 0
    while refused_by_rate(denied):
        assert tries < 4, "Retry-After never let the call through"
        wait = int(denied.headers["retry-after"])
        assert 1 <= wait <= 4 * REFILL_S
        time.sleep(wait)
        waited, tries = waited + wait, tries + 1
        denied = post(rest_url, key, FOUR_MP)
    assert refused_by_credits(denied), (denied.status_code, denied.text)
    print(f"4 MP retry passed after {tries} Retry-After wait(s), {waited} s in all")
    assert waited <= 4 * REFILL_S + tries  # never asked to wait much longer than needed


def test_4mp_calls_count_down_in_redis(redis_pair, limited_account):
    count_down_4mp(redis_pair.rest_url, limited_account())


def test_4mp_calls_count_down_in_one_server_without_redis(stack, new_account):
    if os.environ.get("CLEARBG_REDIS_URL"):
        pytest.skip("the session's stack uses Redis here (CLEARBG_REDIS_URL is set)")
    count_down_4mp(stack.rest_url, new_account(rate_limit_per_minute=LIMIT))


def cut_short(width: int, height: int) -> bytes:
    """A JPEG whose header (and so the probe, and the rate charge) is intact, its pixels not."""
    whole = jpeg(width, height)
    return whole[: len(whole) // 2]


def test_a_retry_after_retry_after_gets_a_real_result(redis_pair, limited_account):
    key = limited_account(payg=Decimal(1))
    # 20 MP whose pixels are cut short: charged the whole minute (20 units) at the probe, then
    # a quick 400 with the credit given back; no inference.
    spent = post(redis_pair.rest_url, key, cut_short(5000, 4000))
    assert spent.status_code == 400 and code(spent) == "invalid_file_type", spent.text
    assert limit_headers(spent)[1] == 0
    denied = post(redis_pair.rest_url, key, small_photo())
    assert refused_by_rate(denied), (denied.status_code, denied.text)
    time.sleep(int(denied.headers["retry-after"]))
    response = post(redis_pair.rest_url, key, small_photo())
    assert response.status_code == 200, response.text[:300]
    assert response.headers["content-type"] == "image/png"
    assert (int(response.headers["x-width"]), int(response.headers["x-height"])) == (640, 480)
    assert response.headers["x-credits-charged"] == "1"
    assert limit_headers(response)[:2] == (LIMIT, 0)  # the unit that came back was spent


def test_the_first_retry_after_lets_a_4mp_call_through(redis_pair, limited_account):
    key = limited_account()
    for _ in range(5):
        assert refused_by_credits(post(redis_pair.rest_url, key, FOUR_MP))
    denied = post(redis_pair.rest_url, key, FOUR_MP)
    assert refused_by_rate(denied)
    time.sleep(int(denied.headers["retry-after"]))
    retried = post(redis_pair.rest_url, key, FOUR_MP)
    assert retried.status_code != 429, (denied.headers["retry-after"], retried.headers.get("retry-after"))

"""AsyncClearBG: the same requests, results, errors and retries as ClearBG, from asyncio code."""

from __future__ import annotations

import asyncio
import io
import os

import pytest

from clearbg import AsyncClearBG, InsufficientCreditsError, RateLimitError
from fake_server import Reply, error_reply

DATA = os.urandom(700_000)


def run(coro):
    return asyncio.run(coro)


def test_a_call_streams_the_file_and_returns_the_result(fake_server, tmp_path):
    photo = tmp_path / "p.jpg"
    photo.write_bytes(DATA)

    async def main():
        async with AsyncClearBG("k", base_url=fake_server.url) as client:
            return await client.remove_background(photo, size="preview", crop=True)

    result = run(main())
    assert result.width == 40 and result.credits_remaining == 49.5
    seen = fake_server.last
    assert seen.form() == {"size": "preview", "crop": "true", "image_file": DATA}
    assert seen.headers["x-api-key"] == "k" and seen.headers["user-agent"].startswith("clearbg-python/")
    assert int(seen.headers["content-length"]) == len(seen.body)


def test_calls_run_concurrently(fake_server):
    fake_server.default = Reply(200, b"ok", {"X-Width": "1"}, delay_s=0.5)

    async def main():
        async with AsyncClearBG("k", base_url=fake_server.url) as client:
            return await asyncio.gather(*(client.remove_background(b"x") for _ in range(4)))

    results = run(main())
    assert len(results) == 4
    arrivals = sorted(seen.at for seen in fake_server.seen)
    assert arrivals[-1] - arrivals[0] < 0.4  # all four were in flight together


def test_retry_after_and_one_key_per_call(fake_server):
    fake_server.queue(error_reply(429, "rate_limit_exceeded", **{"Retry-After": "1"}))
    source = io.BytesIO(b"xx" + DATA)
    source.seek(2)

    async def main():
        async with AsyncClearBG("k", base_url=fake_server.url) as client:
            return await client.remove_background(source)

    run(main())
    first, second = fake_server.seen
    assert second.at - first.at >= 0.95
    assert first.headers["idempotency-key"] == second.headers["idempotency-key"]
    assert first.form()["image_file"] == second.form()["image_file"] == DATA


def test_errors_are_the_same_classes(fake_server):
    fake_server.default = error_reply(402, "insufficient_credits", "no credits")

    async def main():
        async with AsyncClearBG("k", base_url=fake_server.url) as client:
            await client.remove_background(b"x")

    with pytest.raises(InsufficientCreditsError) as caught:
        run(main())
    assert caught.value.code == "insufficient_credits" and len(fake_server.seen) == 1

    fake_server.default = error_reply(429, "rate_limit_exceeded", **{"Retry-After": "0"})

    async def limited():
        async with AsyncClearBG("k", base_url=fake_server.url, max_retries=1) as client:
            await client.remove_background(b"x")

    with pytest.raises(RateLimitError):
        run(limited())
    assert len(fake_server.seen) == 3


def test_account(fake_server):
    body = b'{"data":{"attributes":{"credits":{"total":2.5,"subscription":2,"payg":0.5,"enterprise":0},"api":{"free_calls":3,"sizes":"all"}}}}'
    fake_server.default = Reply(200, body, {"Content-Type": "application/json"})

    async def main():
        async with AsyncClearBG("k", base_url=fake_server.url) as client:
            return await client.account()

    account = run(main())
    assert str(account.credits.total) == "2.5" and account.free_calls == 3

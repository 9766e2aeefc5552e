"""The SDK against the real service (Envoy + gRPC server + model): the picture, and every result
field against the headers the server sent; the account; the errors the server answers; retries
that are replays (one Idempotency-Key, charged once); the async client; and clearbg.grpc
streaming a 20 MB photo to the same picture as the REST call."""

from __future__ import annotations

import asyncio
import io
import os
from decimal import Decimal

import httpx
import pytest
from PIL import Image

from clearbg import (
    AsyncClearBG,
    AuthenticationError,
    BadRequestError,
    ClearBG,
    InsufficientCreditsError,
    UnprocessableEntityError,
)
from clearbg.grpc import ClearBGGrpc
from conftest import QUALITY

pytestmark = pytest.mark.e2e

FOREGROUND_THRESHOLD = 12  # the server's X-Foreground-* box: alpha above this
MASK = QUALITY / "grabcut50" / "masks" / "388016.png"


def alpha_box(image: Image.Image):
    """(top, left, width, height) of alpha above the threshold."""
    left, top, right, bottom = image.getchannel("A").point(lambda a: 255 if a > FOREGROUND_THRESHOLD else 0).getbbox()
    return top, left, right - left, bottom - top


def iou_with_truth(image: Image.Image) -> float:
    found = image.getchannel("A").point(lambda a: 255 if a > 127 else 0).tobytes()
    truth = Image.open(MASK).convert("L").resize(image.size).point(lambda a: 255 if a > 127 else 0).tobytes()
    both = sum(1 for f, t in zip(found, truth) if f and t)
    either = sum(1 for f, t in zip(found, truth) if f or t)
    return both / either


def test_the_result_is_the_picture_and_every_field_is_what_the_server_sent(stack, person):
    account_id, key = stack.account("10")
    answers = []
    http = httpx.Client(timeout=300, event_hooks={"response": [answers.append]})
    with ClearBG(key, base_url=stack.rest_url, http_client=http) as client:
        result = client.remove_background(person, size="small", type_level="1")
    http.close()
    (answer,) = answers
    sent = answer.headers
    image = Image.open(io.BytesIO(result.content))
    assert image.mode == "RGBA" and image.size == (result.width, result.height) == (321, 481)
    assert (result.width, result.height) == (int(sent["x-width"]), int(sent["x-height"]))
    assert (result.foreground.top, result.foreground.left, result.foreground.width, result.foreground.height) == tuple(
        int(sent[f"x-foreground-{side}"]) for side in ("top", "left", "width", "height")
    ) == alpha_box(image)
    assert iou_with_truth(image) > 0.75  # a real cut-out of the woman
    assert result.type == sent["x-type"] == "person"
    assert result.content_type == sent["content-type"] == "image/png"
    assert result.credits_charged == Decimal(sent["x-credits-charged"]) == Decimal(1)
    assert result.credits_remaining == Decimal(sent["x-credits-remaining"]) == Decimal(9) == stack.balance(account_id)
    assert (result.rate_limit.limit, result.rate_limit.remaining, result.rate_limit.reset) == tuple(
        int(sent[f"x-ratelimit-{name}"]) for name in ("limit", "remaining", "reset")
    )
    assert result.rate_limit.limit == 500
    assert result.request_id == sent["x-request-id"] and len(result.request_id) >= 16
    assert result.replayed is False and "idempotent-replayed" not in sent
    assert answer.request.headers["idempotency-key"] and answer.request.headers["user-agent"].startswith("clearbg-python/")


def test_a_path_and_a_file_object_give_the_same_picture(stack, person, tmp_path):
    _, key = stack.account("10")
    photo = tmp_path / "person.jpg"
    photo.write_bytes(person)
    with ClearBG(key, base_url=stack.rest_url) as client, open(photo, "rb") as opened:
        from_path = client.remove_background(str(photo), size="small", format="jpg", bg_color="#00ff00")
        from_file = client.remove_background(opened, size="small", format="jpg", bg_color="#00ff00")
    assert from_path.content_type == "image/jpeg" and from_path.content[:2] == b"\xff\xd8"
    green = Image.open(io.BytesIO(from_path.content)).convert("RGB").getpixel((2, 2))
    assert green[1] > 200 and green[0] < 60 and green[2] < 60  # the corner is background: green
    assert from_file.width == from_path.width and from_file.foreground == from_path.foreground


def test_account_is_what_the_operator_sees(stack):
    account_id, key = stack.account("12.5", free_calls=7)
    with ClearBG(key, base_url=stack.rest_url) as client:
        account = client.account()
    assert account.credits.total == Decimal("12.5") == account.credits.subscription
    assert (account.credits.payg, account.credits.enterprise) == (0, 0)
    assert (account.free_calls, account.sizes) == (7, "all")
    assert account.request_id


def test_the_servers_errors_are_the_sdks_classes(stack, person):
    with ClearBG("cbg_not_a_real_key", base_url=stack.rest_url) as client:
        with pytest.raises(AuthenticationError) as caught:
            client.remove_background(person)
    assert (caught.value.status, caught.value.code) == (401, "invalid_api_key") and caught.value.request_id
    account_id, key = stack.account("0")
    with ClearBG(key, base_url=stack.rest_url) as client:
        with pytest.raises(BadRequestError) as caught:
            client.remove_background(person, size="huge")
        assert caught.value.code == "invalid_size" and "huge" in caught.value.detail
        with pytest.raises(BadRequestError) as caught:
            client.remove_background(b"not an image at all")
        assert caught.value.code == "invalid_file_type"
        with pytest.raises(InsufficientCreditsError) as caught:
            client.remove_background(person, size="small")
        assert caught.value.code == "insufficient_credits" and caught.value.status == 402
    assert stack.charges(account_id) == 0


def test_a_retry_of_a_delivered_call_is_a_replay_charged_once(stack, person):
    account_id, key = stack.account("10")
    with ClearBG(key, base_url=stack.rest_url) as client:
        first = client.remove_background(person, size="small", idempotency_key="sdk-e2e-order-1")
        again = client.remove_background(person, size="small", idempotency_key="sdk-e2e-order-1")
        with pytest.raises(UnprocessableEntityError) as caught:
            client.remove_background(person, size="preview", idempotency_key="sdk-e2e-order-1")
    assert again.replayed and not first.replayed
    assert again.content == first.content and again.credits_remaining == first.credits_remaining == 9
    assert caught.value.code == "idempotency_key_reused"
    assert stack.charges(account_id) == 1


def test_the_async_client_runs_calls_together(stack, person):
    account_id, key = stack.account("10")

    async def main():
        async with AsyncClearBG(key, base_url=stack.rest_url) as client:
            return await asyncio.gather(*(client.remove_background(person, size="small") for _ in range(3)))

    results = asyncio.run(main())
    assert all(r.width == 321 and r.type == "person" for r in results)
    assert sorted(r.credits_remaining for r in results) == [7, 8, 9]
    assert stack.charges(account_id) == 3


def big_photo(person: bytes) -> bytes:
    """The person photo enlarged to 17 MP with grain: a JPEG of 20 to 22 MB."""
    base = Image.open(io.BytesIO(person)).convert("RGB").resize((3400, 5100), Image.BICUBIC)
    grainy = Image.blend(base, Image.frombytes("RGB", base.size, os.urandom(3400 * 5100 * 3)), 0.35)
    for quality in (98, 99, 97, 100, 96):
        out = io.BytesIO()
        grainy.save(out, "JPEG", quality=quality)
        if 20_000_000 <= len(out.getvalue()) <= 22 * 1024 * 1024:
            return out.getvalue()
    raise AssertionError("could not make a 20 MB photo")


def test_grpc_streams_a_20_mb_photo_to_the_same_picture_as_rest(stack, person):
    photo = big_photo(person)
    account_id, key = stack.account("10")
    gateway = stack.rest_url.split("//", 1)[1]  # the gateway passes native gRPC through (h2c)
    with ClearBGGrpc(gateway, key) as client:
        typed = client.remove_background(io.BytesIO(photo), size="medium", type_level="1")
    with ClearBG(key, base_url=stack.rest_url) as client:
        rest = client.remove_background(photo, size="medium", type_level="1")
    assert (typed.width, typed.height) == (rest.width, rest.height) and typed.width * typed.height <= 1_500_000
    assert typed.content_type == rest.content_type == "image/png"
    assert typed.foreground == rest.foreground and typed.type == rest.type == "person"
    assert (typed.credits_charged, typed.credits_remaining, rest.credits_remaining) == (1, 9, 8)
    assert typed.request_id and typed.rate_limit.limit == 500
    a, b = (Image.open(io.BytesIO(r.content)) for r in (typed, rest))
    assert a.mode == b.mode == "RGBA"
    if typed.content != rest.content:  # the same picture, to the engine's own determinism
        differences = [abs(x - y) for x, y in zip(a.getchannel("A").tobytes(), b.getchannel("A").tobytes())]
        assert max(differences) <= 8 and sum(differences) / len(differences) < 0.5
    assert stack.charges(account_id) == 2


def test_grpc_straight_to_the_server_port(stack, person):
    account_id, key = stack.account("10")
    with ClearBGGrpc(stack.grpc_target, key) as client:
        result = client.remove_background(person, size="small", bg_color=(255, 255, 255))
        with pytest.raises(BadRequestError) as caught:
            client.remove_background(b"not an image", size="small")
    image = Image.open(io.BytesIO(result.content))
    assert image.size == (result.width, result.height) == (321, 481)
    assert caught.value.code == "invalid_file_type" and caught.value.status == 400
    assert result.credits_remaining == 9 and stack.charges(account_id) == 1

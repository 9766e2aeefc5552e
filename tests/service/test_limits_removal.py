"""Rate limits inside the removal use case (fake engine, fake clock): where they are checked,
what they cost, and the headers on every answer after authentication."""

from __future__ import annotations

import asyncio
from decimal import Decimal

import grpc
import pytest

from clearbg.v1 import removebg_pb2, removebg_pb2_grpc
from google.api import httpbody_pb2
from service.config import Settings
from service.errors import ApiError
from service.limits import InProcessLimiter, RateLimits
from service.removal import RemovalService
from service_fakes import png_bytes

KEY = "cbg_rate_limited_key"
FOUR_MP = None  # built once, lazily: a 2000 x 2000 PNG


class FakeClock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


def four_mp() -> bytes:
    global FOUR_MP
    if FOUR_MP is None:
        FOUR_MP = png_bytes(2000, 2000)
    return FOUR_MP


@pytest.fixture
def settings() -> Settings:  # overrides tests/service/conftest.py's: a small per-IP limit
    return Settings(grpc_port=0, engine_workers=2, max_queue=64, preview_ip_limit=2)


@pytest.fixture
def clock():
    return FakeClock()


@pytest.fixture
def service(storage, engine, settings, clock):
    account = storage.create_account(
        "limited", subscription=Decimal(100), free_calls=100, rate_limit_per_minute=20
    )
    storage.add_api_key(account.id, KEY)
    limits = RateLimits(InProcessLimiter(clock), preview_ip_limit_per_minute=2)
    service = RemovalService(storage, engine, settings, limits)
    service.account_id = account.id
    yield service
    service.shutdown()


def call(service, fields, client_ip="203.0.113.5"):
    return asyncio.run(service.remove(KEY, "req", fields, client_ip=client_ip))


def refused(service, fields, client_ip="203.0.113.5") -> ApiError:
    with pytest.raises(ApiError) as caught:
        call(service, fields, client_ip)
    return caught.value


def test_four_megapixel_images_five_per_minute_at_limit_20(service, storage, engine, clock):
    fields = {"image_file": four_mp(), "size": "hd"}
    remaining = [dict(call(service, fields).headers)["x-ratelimit-remaining"] for _ in range(5)]
    assert remaining == ["16", "12", "8", "4", "0"]
    # The bucket is empty. The upload's header gives its size, so the Retry-After covers all
    # four of its units (12 s at 20 a minute) and a retry after it passes; refusals cost nothing.
    error = refused(service, fields)
    headers = dict(error.headers)
    assert (error.status, error.code) == (429, "rate_limit_exceeded")
    assert headers["retry-after"] == "12" and headers["x-ratelimit-limit"] == "20"
    assert len(engine.calls) == 5  # the refused call never reached the engine
    assert storage.get_account(service.account_id).subscription == Decimal(95)  # nor was it charged
    clock.now += 12
    assert dict(call(service, fields).headers)["x-ratelimit-remaining"] == "0"


def test_success_carries_the_limit_headers(service, clock):
    headers = dict(call(service, {"image_file": png_bytes(1000, 800), "size": "medium"}).headers)
    assert headers["x-ratelimit-limit"] == "20"
    assert headers["x-ratelimit-remaining"] == "19"
    assert headers["x-ratelimit-reset"] == str(int(clock.now) + 3)
    assert "retry-after" not in headers


def test_refused_before_the_size_is_known_costs_one_and_carries_headers(service):
    error = refused(service, {"image_file": b"not an image"})
    assert error.status == 400
    assert dict(error.headers)["x-ratelimit-remaining"] == "19"


def test_error_after_admission_carries_the_headers_of_the_charge(service, storage):
    broke = storage.create_account("broke", rate_limit_per_minute=20)
    storage.add_api_key(broke.id, "cbg_broke_key")
    with pytest.raises(ApiError) as caught:
        asyncio.run(service.remove("cbg_broke_key", "req", {"image_file": four_mp(), "size": "hd"}))
    assert caught.value.status == 402
    assert dict(caught.value.headers)["x-ratelimit-remaining"] == "16"


def test_an_empty_bucket_refuses_a_download_before_fetching_it(service, monkeypatch):
    for _ in range(5):
        call(service, {"image_file": four_mp(), "size": "hd"})
    fetched = []

    async def fetch(field, url):  # stands in for service.fetching (tested on its own)
        fetched.append(url)
        raise AssertionError("downloaded despite an empty bucket")

    monkeypatch.setattr(service.remote_images, "fetch", fetch)
    error = refused(service, {"image_url": "https://example.com/photo.jpg", "size": "hd"})
    assert error.status == 429 and dict(error.headers)["retry-after"] == "3"
    assert fetched == []


def test_previews_are_limited_per_client_ip(service, storage):
    preview = {"image_file": png_bytes(600, 400), "size": "preview"}
    call(service, preview, client_ip="198.51.100.1")
    call(service, preview, client_ip="198.51.100.1")
    error = refused(service, preview, client_ip="198.51.100.1")
    headers = dict(error.headers)
    assert (error.status, error.code) == (403, "ip_rate_limit_exceeded")
    assert headers["retry-after"] == "30"  # 2 per minute
    assert headers["x-ratelimit-limit"] == "20"  # the key's own limit headers
    assert storage.get_account(service.account_id).free_calls_left() == 98  # the 403 used none
    call(service, preview, client_ip="198.51.100.2")  # another address is unaffected
    call(service, {"image_file": png_bytes(600, 400), "size": "small"}, client_ip="198.51.100.1")


def test_settings_read_the_limit_variables():
    assert Settings.from_environ({}).redis_url is None
    assert Settings.from_environ({}).preview_ip_limit == 50
    env = {"CLEARBG_REDIS_URL": " redis://127.0.0.1:6379/3 ", "CLEARBG_PREVIEW_IP_LIMIT": "7"}
    settings = Settings.from_environ(env)
    assert (settings.redis_url, settings.preview_ip_limit) == ("redis://127.0.0.1:6379/3", 7)
    with pytest.raises(ValueError, match="CLEARBG_PREVIEW_IP_LIMIT"):
        Settings.from_environ({"CLEARBG_PREVIEW_IP_LIMIT": "0"})


def _preview_call(stub, metadata):
    from service_fakes import DEV_KEY

    boundary = "b0undary"
    body = (
        f"--{boundary}\r\nContent-Disposition: form-data; name=\"size\"\r\n\r\npreview\r\n"
        f"--{boundary}\r\nContent-Disposition: form-data; name=\"image_file\"; filename=\"a.png\"\r\n"
        f"Content-Type: image/png\r\n\r\n"
    ).encode() + png_bytes(60, 40) + f"\r\n--{boundary}--\r\n".encode()
    request = removebg_pb2.RemoveBackgroundHttpRequest(
        body=httpbody_pb2.HttpBody(content_type=f"multipart/form-data; boundary={boundary}", data=body)
    )
    return stub.RemoveBackgroundHttp.with_call(request, metadata=[("x-api-key", DEV_KEY), *metadata])


def test_grpc_headers_and_the_per_ip_403_through_the_server(grpc_server, storage, account):
    # 30 a minute refills one unit every 2 s, so the countdown below does not depend on how
    # fast this shared machine runs the two calls (at 500 a minute a unit comes back in 0.12 s).
    storage.update_account(account[0].id, rate_limit_per_minute=30)
    with grpc.insecure_channel(f"127.0.0.1:{grpc_server.port}") as channel:
        stub = removebg_pb2_grpc.RemoveBgServiceStub(channel)
        gateway_ip = [("x-clearbg-client-ip", "203.0.113.77")]
        for expected_remaining in ("29", "28"):
            _, call = _preview_call(stub, gateway_ip)
            headers = dict(call.initial_metadata())
            assert headers["x-ratelimit-limit"] == "30"  # the account's own limit
            assert headers["x-ratelimit-remaining"] == expected_remaining
        with pytest.raises(grpc.RpcError) as caught:
            _preview_call(stub, gateway_ip)
        assert caught.value.code() == grpc.StatusCode.PERMISSION_DENIED
        trailers = dict(caught.value.trailing_metadata())
        assert trailers["x-http-status"] == "403" and trailers["retry-after"] == "30"
        assert trailers["x-ratelimit-limit"] == "30"
        assert not caught.value.initial_metadata()  # trailers-only, as the gateway expects
        # Without the gateway's header the peer address counts: 127.0.0.1 has its own two.
        _preview_call(stub, [])
        _preview_call(stub, [])
        with pytest.raises(grpc.RpcError):
            _preview_call(stub, [])

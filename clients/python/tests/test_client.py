"""ClearBG against the fake server: settings, the request a call sends, results, one error class
per status, and the retries (Retry-After honoured, one Idempotency-Key per logical call)."""

from __future__ import annotations

import email.utils
import socket
import time
import uuid
from decimal import Decimal

import pytest

import clearbg
from clearbg import (
    APIConnectionError,
    APIError,
    APITimeoutError,
    AuthenticationError,
    BadRequestError,
    ClearBG,
    ClearBGError,
    ConflictError,
    InsufficientCreditsError,
    InternalServerError,
    PermissionDeniedError,
    RateLimitError,
    ServiceUnavailableError,
    UnprocessableEntityError,
)
from fake_server import Reply, error_reply, ok_png


def client(server, **settings) -> ClearBG:
    return ClearBG("key-123", base_url=server.url, **settings)


def test_a_call_sends_the_key_the_agent_and_a_fresh_uuid_idempotency_key(fake_server):
    with client(fake_server) as api:
        api.remove_background(b"jpeg-bytes", size="preview")
        api.remove_background(b"jpeg-bytes", size="preview")
    first, second = fake_server.seen
    assert first.method == "POST" and first.path == "/v1.0/removebg"
    assert first.headers["x-api-key"] == "key-123"
    assert first.headers["user-agent"] == f"clearbg-python/{clearbg.__version__}"
    keys = [uuid.UUID(seen.headers["idempotency-key"]) for seen in (first, second)]
    assert all(key.version == 4 for key in keys) and keys[0] != keys[1]
    assert "application/json" not in first.headers.get("accept", "")  # the picture, not its JSON form


def test_the_result_carries_every_header_the_server_sent(fake_server, tmp_path):
    fake_server.queue(ok_png(b"\x89PNG body", **{"Idempotent-Replayed": "true"}))
    with client(fake_server) as api:
        result = api.remove_background(b"x")
    assert result.content == b"\x89PNG body" and result.content_type == "image/png"
    assert (result.width, result.height, result.type) == (40, 30, "person")
    assert result.credits_charged == Decimal(1) and result.credits_remaining == Decimal("49.5")
    assert isinstance(result.credits_remaining, Decimal)
    assert result.foreground == clearbg.Foreground(top=1, left=2, width=30, height=25)
    assert result.rate_limit == clearbg.RateLimit(limit=500, remaining=499, reset=1800000000)
    assert result.request_id == "req-ok" and result.replayed is True
    assert result.save(tmp_path / "out.png").read_bytes() == b"\x89PNG body"
    assert "bytes" in repr(result) and "PNG body" not in repr(result)


def test_no_type_header_is_none_and_not_replayed(fake_server):
    reply = ok_png()
    del reply.headers["X-Type"]
    fake_server.queue(reply)
    with client(fake_server) as api:
        result = api.remove_background(b"x", type_level="none")
    assert result.type is None and result.replayed is False


def test_a_missing_key_is_a_clear_error_before_any_request(fake_server, monkeypatch):
    with pytest.raises(ClearBGError, match="CLEARBG_API_KEY"):
        ClearBG(base_url=fake_server.url)
    assert fake_server.seen == []


def test_key_and_base_url_from_the_environment_and_the_documented_default(fake_server, monkeypatch):
    monkeypatch.setenv("CLEARBG_API_KEY", "env-key")
    assert ClearBG().base_url == "https://api.clearbg.ai"
    monkeypatch.setenv("CLEARBG_BASE_URL", fake_server.url + "/")
    with ClearBG() as api:
        account_reply = b'{"data":{"attributes":{"credits":{"total":50,"subscription":45,"payg":5,"enterprise":0},"api":{"free_calls":50,"sizes":"all"}}}}'
        fake_server.queue(Reply(200, account_reply, {"Content-Type": "application/json", "X-Request-Id": "acc-1"}))
        account = api.account()
    assert fake_server.last.headers["x-api-key"] == "env-key" and fake_server.last.path == "/v1.0/account"
    assert account.credits == clearbg.Credits(Decimal(50), Decimal(45), Decimal(5), Decimal(0))
    assert (account.free_calls, account.sizes, account.request_id) == (50, "all", "acc-1")


def test_account_keeps_fractional_credits_exact(fake_server):
    body = b'{"data":{"attributes":{"credits":{"total":0.3,"subscription":0.1,"payg":0.2,"enterprise":0},"api":{"free_calls":0,"sizes":"all"}}}}'
    fake_server.queue(Reply(200, body, {"Content-Type": "application/json"}))
    with client(fake_server) as api:
        credits = api.account().credits
    assert credits.total == Decimal("0.3") == credits.subscription + credits.payg


@pytest.mark.parametrize(
    "status, cls",
    [
        (400, BadRequestError), (401, AuthenticationError), (402, InsufficientCreditsError),
        (403, PermissionDeniedError), (409, ConflictError), (422, UnprocessableEntityError),
        (429, RateLimitError), (500, InternalServerError), (502, InternalServerError),
        (503, ServiceUnavailableError), (504, InternalServerError), (404, APIError),
    ],
)
def test_each_status_is_its_own_class_with_the_body_fields(fake_server, status, cls):
    fake_server.default = error_reply(status, "some_code", "the detail", **{"Retry-After": "0"})
    with client(fake_server, max_retries=0) as api:
        with pytest.raises(cls) as caught:
            api.remove_background(b"x")
    error = caught.value
    assert type(error) is cls and isinstance(error, APIError) and isinstance(error, ClearBGError)
    assert (error.status, error.code, error.title, error.detail) == (status, "some_code", f"Title {status}", "the detail")
    assert error.request_id == f"req-{status}" and error.headers["x-request-id"] == f"req-{status}"
    assert error.body == {"errors": [{"title": f"Title {status}", "code": "some_code", "detail": "the detail"}]}
    assert str(error) == f"{status} some_code: the detail (request id req-{status})"


def test_a_proxy_page_is_still_a_readable_error_with_its_status(fake_server):
    page = b"<html><head><title>502 Bad Gateway</title></head><body><h1>Bad Gateway</h1></body></html>"
    fake_server.default = Reply(502, page, {"Content-Type": "text/html"})
    with client(fake_server, max_retries=0) as api:
        with pytest.raises(InternalServerError) as caught:
            api.remove_background(b"x")
    error = caught.value
    assert error.status == 502 and error.code is None and error.request_id is None
    assert "502" in error.detail and "Bad Gateway" in error.detail and "<" not in error.detail
    assert error.body == page.decode()


@pytest.mark.parametrize("status, code", [(400, "invalid_size"), (401, "invalid_api_key"), (402, "insufficient_credits"),
                                          (403, "ip_rate_limit_exceeded"), (422, "idempotency_key_reused"),
                                          (409, "idempotency_result_evicted"), (404, "not_found")])
def test_these_fail_at_once(fake_server, status, code):
    fake_server.default = error_reply(status, code, **{"Retry-After": "0"})
    with client(fake_server) as api:
        with pytest.raises(APIError):
            api.remove_background(b"x")
    assert len(fake_server.seen) == 1


@pytest.mark.parametrize("status, code", [(408, "request_timeout"), (409, "idempotency_in_flight"), (429, "rate_limit_exceeded"),
                                          (500, "internal_error"), (502, "bad_gateway"), (503, "overloaded"), (504, "timeout")])
def test_these_are_retried_with_the_same_idempotency_key(fake_server, status, code):
    fake_server.queue(error_reply(status, code, **{"Retry-After": "0"}), error_reply(status, code, **{"Retry-After": "0"}))
    with client(fake_server) as api:
        result = api.remove_background(b"x")
    assert result.width == 40
    assert len(fake_server.seen) == 3
    assert len({seen.headers["idempotency-key"] for seen in fake_server.seen}) == 1
    assert all(seen.form() == fake_server.seen[0].form() == {"image_file": b"x"} for seen in fake_server.seen)


def test_retry_after_in_seconds_is_waited(fake_server):
    fake_server.queue(error_reply(429, "rate_limit_exceeded", **{"Retry-After": "1"}))
    with client(fake_server) as api:
        api.remove_background(b"x")
    first, second = fake_server.seen
    assert second.at - first.at >= 0.95


def test_retry_after_as_an_http_date_is_waited(fake_server):
    when = email.utils.formatdate(time.time() + 2, usegmt=True)  # whole seconds: 1 to 2 s from now
    fake_server.queue(error_reply(503, "overloaded", **{"Retry-After": when}))
    with client(fake_server) as api:
        api.remove_background(b"x")
    first, second = fake_server.seen
    assert second.at - first.at >= 0.9


def test_without_retry_after_the_backoff_grows_and_is_bounded(fake_server, monkeypatch):
    waits = []
    monkeypatch.setattr(clearbg._client.time, "sleep", waits.append)
    fake_server.default = error_reply(500, "internal_error")
    with client(fake_server, max_retries=6) as api:
        with pytest.raises(InternalServerError):
            api.remove_background(b"x")
    assert len(waits) == 6 and len(fake_server.seen) == 7
    for attempt, wait in enumerate(waits):
        base = min(8.0, 0.5 * 2 ** attempt)
        assert 0.75 * base <= wait <= base
    assert max(waits) <= 8.0


def test_retries_stop_at_max_retries_with_the_last_error(fake_server):
    fake_server.default = error_reply(429, "rate_limit_exceeded", **{"Retry-After": "0"})
    with client(fake_server, max_retries=2) as api:
        with pytest.raises(RateLimitError) as caught:
            api.remove_background(b"x")
    assert len(fake_server.seen) == 3 and caught.value.retry_after == 0.0
    fake_server.seen.clear()
    with client(fake_server) as api:
        with pytest.raises(RateLimitError):
            api.remove_background(b"x", max_retries=0)  # per call
    assert len(fake_server.seen) == 1


def test_a_reset_connection_is_retried_with_the_same_key(fake_server):
    fake_server.queue(Reply(drop=True))
    with client(fake_server) as api:
        assert api.remove_background(b"x").width == 40
    assert len(fake_server.seen) == 2
    assert fake_server.seen[0].headers["idempotency-key"] == fake_server.seen[1].headers["idempotency-key"]


def test_nothing_listening_is_a_connection_error():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with ClearBG("k", base_url=f"http://127.0.0.1:{port}", max_retries=1) as api:
        with pytest.raises(APIConnectionError) as caught:
            api.remove_background(b"x")
    assert not isinstance(caught.value, APITimeoutError)


def test_no_answer_in_time_is_a_timeout_error(fake_server):
    fake_server.default = ok_png()
    fake_server.queue(Reply(200, b"", {}, delay_s=1.5))
    with client(fake_server, timeout=0.3, max_retries=0) as api:
        with pytest.raises(APITimeoutError):
            api.remove_background(b"x")


def test_a_timeout_is_retried(fake_server):
    fake_server.queue(Reply(200, b"", {}, delay_s=1.0))
    with client(fake_server, timeout=0.3) as api:
        assert api.remove_background(b"x").width == 40
    assert len(fake_server.seen) == 2


def test_a_key_of_ones_own_is_sent_on_every_attempt(fake_server):
    fake_server.queue(error_reply(503, "overloaded", **{"Retry-After": "0"}))
    with client(fake_server) as api:
        api.remove_background(b"x", idempotency_key="order-1042-photo-3")
    assert [seen.headers["idempotency-key"] for seen in fake_server.seen] == ["order-1042-photo-3"] * 2


def test_account_is_retried_too(fake_server):
    body = b'{"data":{"attributes":{"credits":{"total":1,"subscription":1,"payg":0,"enterprise":0},"api":{"free_calls":0,"sizes":"all"}}}}'
    fake_server.queue(error_reply(503, "overloaded", **{"Retry-After": "0"}), Reply(200, body, {}))
    with client(fake_server) as api:
        assert api.account().credits.total == 1
    assert len(fake_server.seen) == 2 and "idempotency-key" not in fake_server.seen[0].headers


def test_a_redirect_is_an_error_not_a_result(fake_server):
    fake_server.default = Reply(301, b"", {"Location": "https://elsewhere.example/v1.0/removebg"})
    with ClearBG("k", fake_server.url, 5, 0) as api:  # the arguments in the documented order
        with pytest.raises(APIError) as caught:
            api.remove_background(b"x")
    assert caught.value.status == 301 and caught.value.code is None

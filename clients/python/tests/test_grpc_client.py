"""clearbg.grpc against an in-process gRPC server speaking clearbg.v1.RemoveBgService: options
mapped to the typed message, the upload streamed in chunks, results and errors as the REST
client's, retries with one Idempotency-Key."""

from __future__ import annotations

import json
import os
import threading
import time
from concurrent import futures
from decimal import Decimal
from typing import Callable, List, Optional

import grpc
import pytest

from clearbg import APIConnectionError, BadRequestError, InsufficientCreditsError, ServiceUnavailableError
from clearbg.grpc import ClearBGGrpc
from clearbg.v1 import common_pb2, removebg_pb2, removebg_pb2_grpc

IMAGE = os.urandom(3 * 1024 * 1024 + 500_000)


class Servicer(removebg_pb2_grpc.RemoveBgServiceServicer):
    def __init__(self) -> None:
        self.calls: List[dict] = []
        self.answers: List[Callable] = []

    def RemoveBackground(self, request_iterator, context):
        messages = list(request_iterator)
        seen = {
            "metadata": dict(context.invocation_metadata()),
            "options": messages[0].options,
            "chunks": [m.image_chunk for m in messages[1:]],
            "at": time.monotonic(),
        }
        self.calls.append(seen)
        answer = self.answers.pop(0) if self.answers else ok
        return answer(seen, context)


def ok(seen, context):
    context.send_initial_metadata((
        ("x-credits-charged", "1"), ("x-credits-remaining", "41.5"), ("x-type", "animal-dog"),
        ("x-ratelimit-limit", "500"), ("x-ratelimit-remaining", "498"), ("x-ratelimit-reset", "1800000000"),
        ("idempotent-replayed", "true"),
    ))
    return removebg_pb2.RemoveBackgroundResponse(
        image=b"".join(seen["chunks"])[:64], content_type="image/png", width=40, height=30,
        foreground_type=common_pb2.FOREGROUND_TYPE_ANIMAL, credits_charged="1", credits_remaining="41.5",
        type_label="animal-dog",
        foreground=common_pb2.ForegroundBox(top=1, left=2, width=3, height=4),
    )


def refuse(status: int, code: str, grpc_code: grpc.StatusCode, retry_after: Optional[str] = None):
    def answer(seen, context):
        body = json.dumps({"errors": [{"title": "T", "code": code, "detail": f"detail {code}"}]})
        trailers = [("x-http-status", str(status)), ("x-error-body", body)]
        if retry_after is not None:
            trailers.append(("retry-after", retry_after))
        context.abort_with_status(_Status(grpc_code, f"detail {code}", tuple(trailers)))

    return answer


class _Status(grpc.Status):
    def __init__(self, code, details, trailing_metadata):
        self.code, self.details, self.trailing_metadata = code, details, trailing_metadata


@pytest.fixture
def server():
    servicer = Servicer()
    grpc_server = grpc.server(futures.ThreadPoolExecutor(4), options=[("grpc.max_receive_message_length", 64 << 20)])
    removebg_pb2_grpc.add_RemoveBgServiceServicer_to_server(servicer, grpc_server)
    port = grpc_server.add_insecure_port("127.0.0.1:0")
    grpc_server.start()
    servicer.target = f"127.0.0.1:{port}"
    yield servicer
    grpc_server.stop(0)


def test_the_upload_streams_in_chunks_after_the_options(server):
    with ClearBGGrpc(server.target, "key-1") as client:
        result = client.remove_background(IMAGE, size="hd")
    (call,) = server.calls
    assert [len(c) for c in call["chunks"]] == [1 << 20] * 3 + [500_000]
    assert b"".join(call["chunks"]) == IMAGE
    assert call["options"].size == removebg_pb2.SIZE_HD
    assert call["metadata"]["x-api-key"] == "key-1"
    assert len(call["metadata"]["idempotency-key"]) == 36
    assert result.content == IMAGE[:64]


def test_the_result_is_the_rest_clients_with_exact_credits(server):
    with ClearBGGrpc(server.target, "k") as client:
        result = client.remove_background(b"img")
    assert (result.width, result.height, result.type, result.content_type) == (40, 30, "animal-dog", "image/png")
    assert result.credits_charged == Decimal(1) and result.credits_remaining == Decimal("41.5")
    assert (result.foreground.top, result.foreground.left, result.foreground.width, result.foreground.height) == (1, 2, 3, 4)
    assert (result.rate_limit.limit, result.rate_limit.remaining) == (500, 498)
    assert result.replayed is True
    assert result.request_id == server.calls[0]["metadata"]["x-request-id"]


def test_options_take_the_rest_values(server):
    with ClearBGGrpc(server.target, "k") as client:
        client.remove_background(
            image_url="https://example.com/a.jpg", type="transportation", type_level="latest", format="jpg",
            channels="alpha", bg_color="#f008", crop=True, crop_margin="10px 5%", scale="80%",
            position="20% 70%", roi="10 0% 50% 100%", bg_image_file=b"background",
        )
    options = server.calls[0]["options"]
    assert server.calls[0]["chunks"] == []
    assert options.image_url == "https://example.com/a.jpg"
    assert options.type == common_pb2.FOREGROUND_TYPE_CAR and options.type_level == removebg_pb2.TYPE_LEVEL_LATEST
    assert options.format == removebg_pb2.OUTPUT_FORMAT_JPG and options.channels == removebg_pb2.CHANNELS_ALPHA
    assert (options.bg_color.red, options.bg_color.green, options.bg_color.blue, options.bg_color.alpha) == (255, 0, 0, 136)
    assert options.crop and options.scale_percent == 80 and options.bg_image == b"background"
    margin = options.crop_margin
    assert (margin.top.pixels, margin.right.percent, margin.bottom.pixels, margin.left.percent) == (10, 5, 10, 5)
    assert (options.position.point.horizontal, options.position.point.vertical) == (20, 70)
    assert options.roi.x1.pixels == 10 and options.roi.x2.percent == 50


def test_shadow_options_are_carried(server):
    with ClearBGGrpc(server.target, "k") as client:
        client.remove_background(b"img", add_shadow=True, shadow_type="drop", shadow_opacity=70, semitransparency=True)
        client.remove_background(b"img")
    shadowed, plain = (call["options"] for call in server.calls)
    assert shadowed.add_shadow and shadowed.shadow_type == removebg_pb2.SHADOW_TYPE_DROP
    assert shadowed.shadow_opacity == 70 and shadowed.semitransparency is True
    assert not plain.add_shadow and not plain.HasField("shadow_opacity") and not plain.HasField("semitransparency")


def test_exact_credits_come_from_the_message_without_metadata(server):
    def bare(seen, context):
        return removebg_pb2.RemoveBackgroundResponse(image=b"x", credits_charged="1", credits_remaining="0.000001")

    server.answers.append(bare)
    with ClearBGGrpc(server.target, "k") as client:
        result = client.remove_background(b"img")
    assert (result.credits_charged, result.credits_remaining) == (Decimal(1), Decimal("0.000001"))


@pytest.mark.parametrize("name, value", [("size", "huge"), ("bg_color", "rebeccapurple"), ("crop_margin", "1 2 3"),
                                         ("position", "top"), ("roi", "0 0 10"), ("scale", "big"),
                                         ("roi", "-5 0 10 10"), ("bg_color", (300, 0, 0)),
                                         ("shadow_opacity", -3), ("shadow_type", "car3d"), ("add_shadow", "maybe")])
def test_a_value_the_typed_api_cannot_carry_is_a_400_before_any_call(server, name, value):
    with ClearBGGrpc(server.target, "k") as client:
        with pytest.raises(BadRequestError) as caught:
            client.remove_background(b"img", **{name: value})
    assert caught.value.code == f"invalid_{name}" and caught.value.status == 400
    assert server.calls == []


def test_the_servers_error_metadata_gives_the_same_exception(server):
    server.answers.append(refuse(402, "insufficient_credits", grpc.StatusCode.FAILED_PRECONDITION))
    with ClearBGGrpc(server.target, "k") as client:
        with pytest.raises(InsufficientCreditsError) as caught:
            client.remove_background(b"img")
    error = caught.value
    assert (error.status, error.code, error.detail) == (402, "insufficient_credits", "detail insufficient_credits")
    assert error.request_id == server.calls[0]["metadata"]["x-request-id"]
    assert len(server.calls) == 1


def test_503_is_retried_after_retry_after_with_the_same_key_and_the_whole_upload(server):
    server.answers.append(refuse(503, "overloaded", grpc.StatusCode.UNAVAILABLE, retry_after="1"))
    with ClearBGGrpc(server.target, "k") as client:
        client.remove_background(IMAGE)
    first, second = server.calls
    assert second["at"] - first["at"] >= 0.9
    assert first["metadata"]["idempotency-key"] == second["metadata"]["idempotency-key"]
    assert b"".join(second["chunks"]) == IMAGE


def test_503_exhausting_the_retries_raises_service_unavailable(server):
    for _ in range(2):
        server.answers.append(refuse(503, "overloaded", grpc.StatusCode.UNAVAILABLE, retry_after="0"))
    with ClearBGGrpc(server.target, "k", max_retries=1) as client:
        with pytest.raises(ServiceUnavailableError) as caught:
            client.remove_background(b"img")
    assert caught.value.retry_after == 0 and len(server.calls) == 2


def test_nothing_listening_is_a_connection_error():
    with ClearBGGrpc("127.0.0.1:1", "k", max_retries=0, timeout=5) as client:
        with pytest.raises(APIConnectionError):
            client.remove_background(b"img")

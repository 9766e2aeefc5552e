"""Idempotent removals with a fake engine (service/idempotency.py): one run and one charge per
account and key, byte-identical replays, waiting for a call in flight, 422 for other parameters,
nothing kept for a failed call; and both gRPC doors through the in-process server."""

import asyncio
import json
import threading
from decimal import Decimal

import grpc
import pytest

from clearbg.v1 import removebg_pb2, removebg_pb2_grpc
from engine.types import EngineError
from service.config import Settings
from service.errors import ApiError
from service.idempotency import fingerprint
from service.removal import RemovalService
from service_fakes import DEV_KEY, FakeEngine, png_bytes

IMAGE = png_bytes(80, 60)


class GatedEngine(FakeEngine):
    """Holds every removal until `release` is set, so calls overlap for as long as a test wants."""

    def __init__(self):
        super().__init__()
        self.release = threading.Event()
        self.entered = threading.Event()

    def remove(self, data, options):
        self.entered.set()
        assert self.release.wait(10), "the test never released the engine"
        return super().remove(data, options)


def make_service(storage, engine, **settings) -> RemovalService:
    return RemovalService(storage, engine, Settings(grpc_port=0, max_queue=64, **settings))


@pytest.fixture
def removal(storage, engine, account):
    service = make_service(storage, engine)
    yield service
    service.shutdown()


def charges(storage, account) -> int:
    return sum(1 for entry in storage.ledger(account[0].id) if entry.kind == "charge") - sum(
        1 for entry in storage.ledger(account[0].id) if entry.kind == "refund"
    )


async def call(service, fields=None, key="idem-1", request_id="req", accept_json=False):
    return await service.remove(
        DEV_KEY, request_id, fields or {"image_file": IMAGE, "size": "small"},
        accept_json=accept_json, idempotency_key=key,
    )


def refused(coro) -> ApiError:
    with pytest.raises(ApiError) as caught:
        asyncio.run(coro)
    return caught.value


def test_a_repeat_is_the_same_answer_replayed_and_charged_once(removal, engine, storage, account):
    first = asyncio.run(call(removal, request_id="r1"))
    second = asyncio.run(call(removal, request_id="r2"))
    assert len(engine.calls) == 1 and charges(storage, account) == 1
    assert second.body == first.body and second.content_type == first.content_type
    assert second.headers == (*first.headers, ("idempotent-replayed", "true"))
    assert ("idempotent-replayed", "true") not in first.headers
    assert (second.charged, second.remaining) == (first.charged, first.remaining) == (Decimal(1), Decimal(49))
    assert second.result.foreground == first.result.foreground and second.result.width == first.result.width
    assert storage.get_account(account[0].id).total == Decimal(49)


def test_without_a_key_every_call_runs_and_is_charged(removal, engine, storage, account):
    for key in (None, "", "  "):
        asyncio.run(call(removal, key=key))
    assert len(engine.calls) == 3 and charges(storage, account) == 3


def test_the_same_key_with_other_parameters_is_422_and_free(removal, engine, storage, account):
    asyncio.run(call(removal))
    for fields, accept_json in (
        ({"image_file": IMAGE, "size": "medium"}, False),
        ({"image_file": png_bytes(80, 61), "size": "small"}, False),
        ({"image_file": IMAGE, "size": "small"}, True),  # another form of answer
    ):
        error = refused(call(removal, fields, accept_json=accept_json))
        assert (error.status, error.code) == (422, "idempotency_key_reused")
        assert {"x-ratelimit-limit", "x-ratelimit-remaining"} <= dict(error.headers).keys()
    assert len(engine.calls) == 1 and charges(storage, account) == 1


def test_keys_are_per_account(removal, engine, storage):
    other = storage.create_account("other", payg=Decimal(3))
    storage.add_api_key(other.id, "cbg_other_key")
    asyncio.run(call(removal))
    asyncio.run(removal.remove("cbg_other_key", "r", {"image_file": IMAGE, "size": "small"}, idempotency_key="idem-1"))
    assert len(engine.calls) == 2


def test_a_failed_first_call_keeps_nothing_and_the_retry_runs(removal, engine, storage, account):
    engine.fail_with = EngineError("invalid_file_type", "broken")
    assert refused(call(removal)).code == "invalid_file_type"
    engine.fail_with = None
    retried = asyncio.run(call(removal, request_id="r2"))
    assert dict(retried.headers)["x-credits-charged"] == "1"
    assert ("idempotent-replayed", "true") not in retried.headers
    assert len(engine.calls) == 2 and charges(storage, account) == 1


def test_a_402_keeps_nothing_and_the_retry_after_a_top_up_runs(storage, engine):
    broke = storage.create_account("broke")
    storage.add_api_key(broke.id, "cbg_broke_key")
    service = make_service(storage, engine)
    fields = {"image_file": IMAGE, "size": "small"}
    try:
        error = refused(service.remove("cbg_broke_key", "r1", fields, idempotency_key="k"))
        assert error.code == "insufficient_credits"
        storage.add_credits(broke.id, "top-up", payg=Decimal(1))
        done = asyncio.run(service.remove("cbg_broke_key", "r2", fields, idempotency_key="k"))
        assert dict(done.headers)["x-credits-charged"] == "1"
    finally:
        service.shutdown()


def test_concurrent_repeats_wait_for_the_first_and_replay_it(storage, account):
    engine = GatedEngine()
    service = make_service(storage, engine)

    async def scenario():
        calls = [asyncio.ensure_future(call(service, request_id=f"r{n}")) for n in range(4)]
        await asyncio.to_thread(engine.entered.wait, 10)
        await asyncio.sleep(0.3)  # the repeats are polling meanwhile
        engine.release.set()
        return await asyncio.gather(*calls)

    try:
        answers = asyncio.run(scenario())
    finally:
        service.shutdown()
    assert len(engine.calls) == 1 and charges(storage, account) == 1
    replays = [a for a in answers if ("idempotent-replayed", "true") in a.headers]
    assert len(replays) == 3 and {a.body for a in answers} == {answers[0].body}


def test_a_repeat_waits_only_so_long_then_409_in_flight_with_retry_after(storage, account):
    engine = GatedEngine()
    service = make_service(storage, engine, idempotency_wait_s=0.3)

    async def scenario():
        first = asyncio.ensure_future(call(service, request_id="r1"))
        await asyncio.to_thread(engine.entered.wait, 10)
        try:
            await call(service, request_id="r2")
        except ApiError as exc:
            return exc
        finally:
            engine.release.set()
            await first

    try:
        error = asyncio.run(scenario())
    finally:
        service.shutdown()
    assert (error.status, error.code) == (409, "idempotency_in_flight")
    assert dict(error.headers)["retry-after"] == "1"
    assert charges(storage, account) == 1


def test_a_cancelled_first_call_frees_the_key(storage, account):
    engine = GatedEngine()
    service = make_service(storage, engine)

    async def scenario():
        first = asyncio.ensure_future(call(service, request_id="r1"))
        await asyncio.to_thread(engine.entered.wait, 10)
        first.cancel()  # the client went away
        with pytest.raises(asyncio.CancelledError):
            await first
        engine.release.set()
        for _ in range(50):  # the release runs in a thread
            with storage._read() as db:
                if db.execute("SELECT count(*) FROM idempotency").fetchone()[0] == 0:
                    break
            await asyncio.sleep(0.05)
        return await call(service, request_id="r2")

    try:
        answer = asyncio.run(scenario())
    finally:
        service.shutdown()
    assert ("idempotent-replayed", "true") not in answer.headers
    assert charges(storage, account) == 1  # the cancelled call was refunded


def test_an_evicted_answer_is_refused_never_charged_again(storage, engine, account):
    service = make_service(storage, engine, idempotency_max_bytes=10)  # smaller than any answer
    try:
        asyncio.run(call(service))
        error = refused(call(service, request_id="r2"))
    finally:
        service.shutdown()
    assert (error.status, error.code) == (409, "idempotency_result_evicted")
    assert charges(storage, account) == 1


@pytest.mark.parametrize("key", ["k" * 256, "clé", "tab\there"])
def test_a_malformed_key_is_400(removal, engine, key):
    error = refused(call(removal, key=key))
    assert (error.status, error.code) == (400, "invalid_idempotency_key")
    assert not engine.calls


def test_the_json_answer_replays_too(removal, engine):
    first = asyncio.run(call(removal, accept_json=True))
    second = asyncio.run(call(removal, accept_json=True))
    assert second.body == first.body and json.loads(second.body)["data"]["result_b64"]
    assert len(engine.calls) == 1


def test_fingerprints_tell_text_from_bytes_and_field_boundaries_apart():
    assert fingerprint({"a": "1"}, "image") != fingerprint({"a": b"1"}, "image")
    assert fingerprint({"a": "bc"}, "image") != fingerprint({"ab": "c"}, "image")
    assert fingerprint({"a": "1", "b": "2"}, "image") == fingerprint({"b": "2", "a": "1"}, "image")
    assert fingerprint({"a": "1"}, "image") != fingerprint({"a": "1"}, "json")


@pytest.fixture
def channel(grpc_server, account):
    with grpc.insecure_channel(f"127.0.0.1:{grpc_server.port}") as ch:
        yield ch


def test_both_grpc_doors_replay_with_the_replayed_metadata(channel, engine, storage, account):
    stub = removebg_pb2_grpc.RemoveBgServiceStub(channel)
    metadata = (("x-api-key", DEV_KEY), ("idempotency-key", "typed-1"))

    def typed():
        messages = iter([
            removebg_pb2.RemoveBackgroundRequest(options=removebg_pb2.RemoveBackgroundOptions(size=removebg_pb2.SIZE_SMALL)),
            removebg_pb2.RemoveBackgroundRequest(image_chunk=IMAGE),
        ])
        return stub.RemoveBackground.with_call(messages, metadata=metadata, timeout=30)

    first, first_call = typed()
    second, second_call = typed()
    assert second == first and first.credits_charged == "1" and first.width == 80
    assert dict(second_call.initial_metadata())["idempotent-replayed"] == "true"
    assert "idempotent-replayed" not in dict(first_call.initial_metadata())
    assert len(engine.calls) == 1 and charges(storage, account) == 1

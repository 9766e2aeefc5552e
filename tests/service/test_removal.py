"""The removal use case with a fake engine: pricing, sizes, charging only for delivered
results, headers and the JSON answer."""

import asyncio
import base64
import json
from decimal import Decimal

import pytest

from engine.types import EngineError
from service.errors import ApiError
from service.removal import RemovalService, format_credits
from service_fakes import DEV_KEY, FakeEngine, png_bytes


def run(coro):
    return asyncio.run(coro)


@pytest.fixture
def removal(storage, engine, settings, account):
    service = RemovalService(storage, engine, settings)
    yield service
    service.shutdown()


def remove(removal, fields, key=DEV_KEY, accept_json=False):
    return run(removal.remove(key, "req-1", fields, accept_json=accept_json))


def api_error(fn, *args, **kwargs) -> ApiError:
    with pytest.raises(ApiError) as caught:
        fn(*args, **kwargs)
    return caught.value


def test_paid_call_charges_one_credit_and_reports_headers(removal, storage, account):
    delivery = remove(removal, {"image_file": png_bytes(1000, 800), "size": "medium"})
    headers = dict(delivery.headers)
    assert headers["x-credits-charged"] == "1"
    assert headers["x-credits-remaining"] == "49"
    assert int(headers["x-width"]) * int(headers["x-height"]) <= 1_500_000
    assert headers["x-type"] == "person"
    assert {"x-foreground-top", "x-foreground-left", "x-foreground-width", "x-foreground-height"} <= headers.keys()
    after = storage.get_account(account[0].id)
    assert (after.subscription, after.payg) == (Decimal(44), Decimal(5))
    [entry] = storage.ledger(account[0].id)
    assert entry.request_id == "req-1" and entry.key_id == account[1].id


@pytest.mark.parametrize("size, cap", [("preview", 250_000), ("small", 250_000), ("hd", 4_000_000), ("full", 25_000_000)])
def test_size_sets_the_output_cap(removal, engine, size, cap):
    remove(removal, {"image_file": png_bytes(64, 64), "size": size})
    assert engine.calls[-1][1].max_output_pixels == cap


def test_the_engine_may_reuse_net_results_only_within_the_callers_account(removal, engine, storage, account):
    other = storage.create_account("other", payg=Decimal(5))
    storage.add_api_key(other.id, "cbg_other")
    remove(removal, {"image_file": png_bytes(64, 64), "size": "small"})
    remove(removal, {"image_file": png_bytes(64, 64), "size": "small"}, key="cbg_other")
    assert [options.cache_scope for _, options in engine.calls[-2:]] == [str(account[0].id), str(other.id)]


def test_preview_is_free_and_uses_a_free_call(removal, storage, account):
    delivery = remove(removal, {"image_file": png_bytes(64, 64), "size": "preview"})
    assert dict(delivery.headers)["x-credits-charged"] == "0"
    after = storage.get_account(account[0].id)
    assert after.total == Decimal(50) and after.free_calls_left() == 49


def test_auto_falls_back_to_preview_without_credits(storage, engine, settings):
    broke = storage.create_account("broke", payg=Decimal("0.5"), free_calls=1)
    storage.add_api_key(broke.id, "cbg_broke")
    service = RemovalService(storage, engine, settings)
    delivery = run(service.remove("cbg_broke", "r", {"image_file": png_bytes(64, 64)}))
    assert engine.calls[-1][1].max_output_pixels == 250_000
    assert dict(delivery.headers)["x-credits-charged"] == "0"
    assert dict(delivery.headers)["x-credits-remaining"] == "0.5"
    # Paid size without credits: 402; preview without free calls: 402 too.
    assert api_error(run, service.remove("cbg_broke", "r", {"image_file": png_bytes(64, 64), "size": "hd"})).code == "insufficient_credits"
    error = api_error(run, service.remove("cbg_broke", "r", {"image_file": png_bytes(64, 64), "size": "preview"}))
    assert (error.status, error.code) == (402, "insufficient_free_calls")
    service.shutdown()


def test_auto_picks_full_when_the_account_can_pay(removal, engine):
    remove(removal, {"image_file": png_bytes(64, 64)})
    assert engine.calls[-1][1].max_output_pixels == 25_000_000


@pytest.mark.parametrize("failure", [RuntimeError("onnx exploded"), EngineError("resolution_too_high", "too big")])
def test_nothing_is_charged_when_the_engine_fails(removal, engine, storage, account, failure):
    engine.fail_with = failure
    error = api_error(remove, removal, {"image_file": png_bytes(64, 64), "size": "hd"}) if isinstance(failure, EngineError) else None
    if error is not None:
        assert (error.status, error.code) == (400, "resolution_too_high")
    else:
        with pytest.raises(RuntimeError):
            remove(removal, {"image_file": png_bytes(64, 64), "size": "hd"})
    # Reserved before the engine ran, then given back exactly.
    assert storage.get_account(account[0].id).total == Decimal(50)
    charge, refund = storage.ledger(account[0].id)
    assert (charge.kind, refund.kind, refund.reverses, refund.amount) == ("charge", "refund", charge.id, Decimal(1))


def test_a_call_the_account_cannot_pay_is_refused_before_the_engine(storage, engine, settings):
    broke = storage.create_account("broke", payg=Decimal("0.5"))
    storage.add_api_key(broke.id, "cbg_broke")
    service = RemovalService(storage, engine, settings)
    error = api_error(run, service.remove("cbg_broke", "r", {"image_file": png_bytes(64, 64), "size": "full"}))
    service.shutdown()
    assert (error.status, error.code) == (402, "insufficient_credits")
    assert "0.5" in error.detail
    assert engine.calls == [] and storage.ledger(broke.id) == []


def test_a_cancelled_call_gives_its_credit_back(storage, settings, account):
    """The client went away while the engine ran: the reservation is refunded."""
    import threading

    started, release = threading.Event(), threading.Event()

    class SlowEngine(FakeEngine):
        def remove(self, data, options):
            started.set()
            release.wait(10)
            return super().remove(data, options)

    service = RemovalService(storage, SlowEngine(), settings)

    async def scenario():
        call = asyncio.ensure_future(service.remove(DEV_KEY, "gone", {"image_file": png_bytes(8, 8), "size": "hd"}))
        await asyncio.to_thread(started.wait, 10)
        assert storage.get_account(account[0].id).total == Decimal(49)  # reserved while running
        call.cancel()
        with pytest.raises(asyncio.CancelledError):
            await call
        release.set()

    run(scenario())
    service.shutdown()
    assert storage.get_account(account[0].id).total == Decimal(50)
    assert [e.kind for e in storage.ledger(account[0].id)] == ["charge", "refund"]


def test_a_call_cancelled_while_queued_never_reaches_the_engine_and_is_not_charged(storage, settings, account):
    """The client went away while its call waited behind another: no inference, no charge."""
    import dataclasses
    import threading

    started, release = threading.Event(), threading.Event()

    class OneAtATime(FakeEngine):
        def remove(self, data, options):
            started.set()
            release.wait(10)
            return super().remove(data, options)

    engine = OneAtATime()
    service = RemovalService(storage, engine, dataclasses.replace(settings, engine_workers=1))

    async def scenario():
        fields = {"image_file": png_bytes(8, 8), "size": "hd"}
        first = asyncio.ensure_future(service.remove(DEV_KEY, "running", fields))
        await asyncio.to_thread(started.wait, 10)
        queued = asyncio.ensure_future(service.remove(DEV_KEY, "queued", {**fields, "image_file": png_bytes(9, 9)}))
        await asyncio.sleep(0.3)
        assert storage.get_account(account[0].id).total == Decimal(48)  # both reserved
        queued.cancel()
        with pytest.raises(asyncio.CancelledError):
            await queued
        release.set()
        await first

    run(scenario())
    service.shutdown()
    assert [data for data, _ in engine.calls] == [png_bytes(8, 8)]  # only the first ran
    assert storage.get_account(account[0].id).total == Decimal(49)
    assert [e.kind for e in storage.ledger(account[0].id)].count("refund") == 1


def test_authentication_errors(removal):
    assert api_error(remove, removal, {"image_file": png_bytes(8, 8)}, key=None).code == "missing_api_key"
    error = api_error(remove, removal, {"image_file": png_bytes(8, 8)}, key="cbg_wrong")
    assert (error.status, error.code) == (401, "invalid_api_key")


def test_undecodable_image_is_invalid_file_type_and_free(removal, storage, account, engine):
    error = api_error(remove, removal, {"image_file": b"definitely not an image"})
    assert (error.status, error.code) == (400, "invalid_file_type")
    assert engine.calls == [] and storage.ledger(account[0].id) == []


def test_json_answer(removal):
    delivery = remove(removal, {"image_file": png_bytes(64, 64), "format": "webp"}, accept_json=True)
    assert delivery.content_type == "application/json"
    data = json.loads(delivery.body)["data"]
    assert base64.b64decode(data["result_b64"]) == b"fake-result:webp"
    assert (data["foreground_top"], data["foreground_left"]) == (1, 2)
    assert data["foreground_width"] == 62 and data["foreground_height"] == 63


def test_type_level_none_has_no_type_header(removal):
    delivery = remove(removal, {"image_file": png_bytes(64, 64), "type_level": "none"})
    assert "x-type" not in dict(delivery.headers)


@pytest.mark.parametrize("level, x_type", [("1", "person"), ("2", "person-fake"), ("latest", "person-fake")])
def test_type_level_2_reports_the_finer_label(removal, level, x_type):
    delivery = remove(removal, {"image_file": png_bytes(64, 64), "type_level": level})
    assert dict(delivery.headers)["x-type"] == x_type


def test_not_ready_engine_is_503(storage, settings, account):
    service = RemovalService(storage, None, settings)
    error = api_error(run, service.remove(DEV_KEY, "r", {"image_file": png_bytes(8, 8)}))
    assert (error.status, error.code) == (503, "not_ready")
    assert ("retry-after", "5") in error.headers
    service.shutdown()


@pytest.mark.parametrize("amount, text", [(Decimal(1), "1"), (Decimal("49.000000"), "49"), (Decimal("0.5"), "0.5"), (Decimal(0), "0"), (Decimal("1E+2"), "100")])
def test_format_credits(amount, text):
    assert format_credits(amount) == text


class HeldEngine(FakeEngine):
    """Each removal waits until `release` is set: a queue that stays full while a test looks."""

    def __init__(self, release):
        super().__init__()
        self.release = release

    def remove(self, data, options):
        self.release.wait(10)
        return super().remove(data, options)


def test_full_queue_is_503_not_an_unbounded_wait(storage, settings, account):
    import dataclasses
    import threading

    release = threading.Event()

    service = RemovalService(storage, HeldEngine(release), dataclasses.replace(settings, engine_workers=1, max_queue=1))

    async def scenario():
        fields = {"image_file": png_bytes(8, 8), "size": "preview"}
        first = asyncio.ensure_future(service.remove(DEV_KEY, "a", fields))
        second = asyncio.ensure_future(service.remove(DEV_KEY, "b", fields))
        await asyncio.sleep(0.3)  # both hold a slot now: one running, one waiting
        with pytest.raises(ApiError) as caught:
            await service.remove(DEV_KEY, "c", fields)
        release.set()
        await asyncio.gather(first, second)
        return caught.value

    error = run(scenario())
    assert (error.status, error.code) == (503, "overloaded")
    assert any(name == "retry-after" for name, _ in error.headers)
    assert storage.get_account(account[0].id).free_calls_left() == 48  # the two that ran
    service.shutdown()


def test_a_call_the_admission_refuses_never_touches_the_ledger(storage, settings, account):
    """One engine worker, one queued place. "c" is slow to reserve; "b" arrives meanwhile. Queued
    before paying, "c" holds the place and "b" is refused at once, charged nothing; paying first
    (the old order), "b" took the place while "c" reserved, and "c" was charged, then refunded."""
    import dataclasses
    import threading
    import time

    release = threading.Event()
    reserving = threading.Event()

    real_reserve = storage.reserve

    def reserve(account_id, key_id, request_id, *args, **kwargs):
        if request_id == "c":
            reserving.set()
            time.sleep(0.5)
        return real_reserve(account_id, key_id, request_id, *args, **kwargs)

    storage.reserve = reserve
    service = RemovalService(storage, HeldEngine(release), dataclasses.replace(settings, engine_workers=1, max_queue=1))

    async def scenario():
        fields = {"image_file": png_bytes(8, 8), "size": "full"}
        first = asyncio.ensure_future(service.remove(DEV_KEY, "a", fields))
        await asyncio.sleep(0.3)  # "a" runs
        slow = asyncio.ensure_future(service.remove(DEV_KEY, "c", fields))
        await asyncio.to_thread(reserving.wait, 10)
        with pytest.raises(ApiError) as caught:
            await service.remove(DEV_KEY, "b", fields)
        release.set()
        await asyncio.gather(first, slow)
        return caught.value

    error = run(scenario())
    assert (error.status, error.code) == (503, "overloaded")
    assert [e.kind for e in storage.ledger(account[0].id)] == ["charge", "charge"]
    service.shutdown()


@pytest.mark.parametrize(
    ("size", "free_calls", "code"),
    [("full", 50, "insufficient_credits"), ("hd", 0, "insufficient_credits"),
     ("preview", 0, "insufficient_free_calls"), ("auto", 0, "insufficient_free_calls")],
)
def test_a_call_the_balance_rules_out_is_refused_before_it_queues(storage, settings, account, size, free_calls, code):
    """The engine busy and its one queued place taken: a caller who cannot pay gets its 402 at
    once, not a 503 `overloaded` (or, with a free place, a wait) for a call it could never pay."""
    import dataclasses
    import threading

    broke = storage.create_account("broke", payg=Decimal("0.5"), free_calls=free_calls)
    storage.add_api_key(broke.id, "cbg_broke")
    release = threading.Event()
    service = RemovalService(storage, HeldEngine(release), dataclasses.replace(settings, engine_workers=1, max_queue=1))

    async def scenario():
        fields = {"image_file": png_bytes(8, 8), "size": "preview"}
        running = [asyncio.ensure_future(service.remove(DEV_KEY, name, fields)) for name in ("a", "b")]
        await asyncio.sleep(0.3)  # one runs, one waits: the queue is full
        try:
            with pytest.raises(ApiError) as caught:
                await service.remove("cbg_broke", "c", {"image_file": png_bytes(8, 8), "size": size})
        finally:
            release.set()
            await asyncio.gather(*running)
        return caught.value

    error = run(scenario())
    service.shutdown()
    assert (error.status, error.code) == (402, code)
    assert storage.ledger(broke.id) == []

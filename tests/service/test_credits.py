"""service/credits.paid_call around the real SQLite storage: what a call reserves, and that
every way of failing or going away gives it back exactly once."""

from __future__ import annotations

import asyncio
import threading
import time
from decimal import Decimal

import pytest

from service.credits import paid_call
from service.errors import ApiError
from service.reservations import Reservations


def run(coro):
    return asyncio.run(coro)


def held(storage) -> Reservations:
    """This server's reservations on `storage` (settled or refunded by paid_call itself here)."""
    return Reservations(storage, deadline_s=60.0, heartbeat_s=1.0, stale_s=5.0, owner="test")


class GatedStorage:
    """The real storage, with reserve() held until the test opens the gate."""

    def __init__(self, storage):
        self.storage = storage
        self.entered, self.gate = threading.Event(), threading.Event()

    def reserve(self, *args, **kwargs):
        self.entered.set()
        self.gate.wait(10)
        return self.storage.reserve(*args, **kwargs)

    def __getattr__(self, name):
        return getattr(self.storage, name)


@pytest.mark.parametrize("size, expected", [("full", "full"), ("hd", "hd"), ("auto", "full"), ("preview", "preview")])
def test_sizes_and_what_they_cost(storage, size, expected):
    acc = storage.create_account("a", payg=Decimal(2), free_calls=1)

    async def go():
        async with paid_call(held(storage), acc.id, None, "r", size) as paid:
            return paid

    paid = run(go())
    assert storage.unsettled_reservations() == 0  # delivered: settled
    assert paid.size == expected
    assert paid.charged == (0 if expected == "preview" else 1)
    assert paid.remaining == (2 if expected == "preview" else 1)


def test_auto_without_credits_becomes_a_free_preview_and_then_402(storage):
    acc = storage.create_account("a", payg=Decimal("0.5"), free_calls=1)

    async def go():
        async with paid_call(held(storage), acc.id, None, "r", "auto") as paid:
            return paid

    assert run(go()).size == "preview"
    with pytest.raises(ApiError) as caught:
        run(go())
    assert (caught.value.status, caught.value.code) == (402, "insufficient_free_calls")


def test_an_error_in_the_block_refunds_and_goes_on(storage):
    acc = storage.create_account("a", subscription=Decimal("0.5"), payg=Decimal(1))

    async def go():
        async with paid_call(held(storage), acc.id, None, "r", "full"):
            raise RuntimeError("engine exploded")

    with pytest.raises(RuntimeError, match="engine exploded"):
        run(go())
    after = storage.get_account(acc.id)
    assert (after.subscription, after.payg) == (Decimal("0.5"), Decimal(1))
    assert [e.kind for e in storage.ledger(acc.id)] == ["charge", "refund"]


def test_cancelled_while_the_database_decides_still_gives_back(storage):
    acc = storage.create_account("a", payg=Decimal(3))
    gated = GatedStorage(storage)

    async def go():
        async def call():
            async with paid_call(held(gated), acc.id, None, "r", "full"):
                await asyncio.sleep(10)

        task = asyncio.ensure_future(call())
        await asyncio.to_thread(gated.entered.wait, 10)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        gated.gate.set()  # the reservation lands only now, after the caller left
        deadline = time.monotonic() + 10
        while len(storage.ledger(acc.id)) < 2 and time.monotonic() < deadline:
            await asyncio.sleep(0.02)

    run(go())
    assert storage.get_account(acc.id).payg == Decimal(3)
    assert [e.kind for e in storage.ledger(acc.id)] == ["charge", "refund"]

"""Crash-safe credits (service/reservations.py, service/storage/sql.py) on both backends (SQLite,
and the real PostgreSQL in a schema of its own): a held charge is settled or refunded exactly
once, whoever tries; a sweeper refunds what a dead owner or a passed deadline left, with its
refund row in the ledger, and leaves live owners' reservations alone; several sweepers racing
on one database refund each reservation once; a refund the database refused is retried."""

from __future__ import annotations

import asyncio
import threading
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal

import pytest
from prometheus_client import REGISTRY

from service.credits import paid_call
from service.errors import ApiError
from service.reservations import Reservations
from service.storage import Hold, StorageUnavailable, open_storage

from both_databases import database_url, storage  # noqa: F401 - fixtures, both databases


class Clock:
    def __init__(self, now: float = 1_000_000.0):
        self.now = now

    def __call__(self) -> float:
        return self.now


def held(storage, account_id: int, owner: str, deadline: float, request_id: str = "r"):
    return storage.reserve(account_id, None, request_id, Decimal(1), hold=Hold(owner, deadline))


def test_a_settled_charge_stays_and_is_not_swept(storage):
    acc = storage.create_account("a", payg=Decimal(3))
    storage.heartbeat("alive", 100.0)
    reservation = held(storage, acc.id, "alive", deadline=200.0)
    assert storage.unsettled_reservations(acc.id) == 1
    assert storage.settle(reservation.entry_id) is True
    assert storage.settle(reservation.entry_id) is False  # once
    assert storage.unsettled_reservations(acc.id) == 0
    assert storage.sweep_reservations(now=10_000.0, stale_before=9_000.0) == []
    assert storage.get_account(acc.id).payg == 2
    assert [e.kind for e in storage.ledger(acc.id)] == ["charge"]


def test_a_refund_ends_the_hold_and_a_later_settle_fails(storage):
    acc = storage.create_account("a", payg=Decimal(3))
    reservation = held(storage, acc.id, "me", deadline=200.0)
    storage.refund(reservation.entry_id, "r")
    assert storage.unsettled_reservations() == 0
    assert storage.settle(reservation.entry_id) is False
    assert storage.get_account(acc.id).payg == 3


def test_sweep_refunds_a_gone_owner_and_a_passed_deadline_once(storage):
    acc = storage.create_account("a", subscription=Decimal(2), payg=Decimal(2), free_calls=1)
    storage.heartbeat("alive", 1000.0)
    storage.heartbeat("dead", 900.0)  # silent since
    kept = held(storage, acc.id, "alive", deadline=2000.0, request_id="kept")
    orphan = held(storage, acc.id, "dead", deadline=2000.0, request_id="orphan")
    never_seen = held(storage, acc.id, "no-heartbeat-ever", deadline=2000.0, request_id="unknown")
    late = held(storage, acc.id, "alive", deadline=1005.0, request_id="late")
    preview = storage.reserve_free_call(acc.id, None, "preview", hold=Hold("dead", 2000.0))
    assert storage.get_account(acc.id).total == 0 and storage.get_account(acc.id).free_calls_left() == 0

    # Without a liveness bound only deadlines count.
    swept = storage.sweep_reservations(now=1010.0, stale_before=None)
    assert [(s.entry_id, s.reason) for s in swept] == [(late.entry_id, "expired")]
    swept = storage.sweep_reservations(now=1010.0, stale_before=950.0)
    assert sorted((s.entry_id, s.reason, s.owner) for s in swept) == sorted([
        (orphan.entry_id, "owner_gone", "dead"),
        (never_seen.entry_id, "owner_gone", "no-heartbeat-ever"),
        (preview.entry_id, "owner_gone", "dead"),
    ])
    assert {(s.entry_id, s.amount, s.free_call) for s in swept} >= {(orphan.entry_id, 1, False), (preview.entry_id, 0, True)}
    assert storage.sweep_reservations(now=1010.0, stale_before=950.0) == []  # exactly once
    assert storage.unsettled_reservations(acc.id) == 1  # the live owner's, within its deadline
    assert storage.settle(kept.entry_id) is True
    after = storage.get_account(acc.id)
    assert (after.subscription, after.payg, after.free_calls_left()) == (Decimal(1), Decimal(2), 1)  # only `kept` paid
    refunds = {e.reverses: e for e in storage.ledger(acc.id) if e.kind == "refund"}
    assert set(refunds) == {orphan.entry_id, never_seen.entry_id, late.entry_id, preview.entry_id}
    assert refunds[orphan.entry_id].request_id == "orphan"  # the refund names the call it gives back


def test_retire_makes_an_owner_gone_at_once(storage):
    acc = storage.create_account("a", payg=Decimal(1))
    storage.heartbeat("leaving", 1000.0)
    held(storage, acc.id, "leaving", deadline=5000.0)
    assert storage.sweep_reservations(now=1001.0, stale_before=990.0) == []
    storage.retire("leaving")
    assert len(storage.sweep_reservations(now=1001.0, stale_before=990.0)) == 1
    assert storage.get_account(acc.id).payg == 1


def test_racing_sweepers_and_settles_act_once_per_reservation(database_url):
    """Four storages (four server processes) sweep while the owner settles some: every
    reservation ends exactly one way, and the balance matches the settled ones."""
    stores = [open_storage(database_url) for _ in range(4)]
    try:
        acc = stores[0].create_account("race", payg=Decimal(40))
        stores[0].heartbeat("dead", 0.0)
        entries = [held(stores[0], acc.id, "dead", deadline=10_000.0, request_id=f"r{i}").entry_id for i in range(40)]
        settled: list[int] = []
        start = threading.Barrier(5)

        def sweep(store):
            start.wait()
            return [s.entry_id for s in store.sweep_reservations(now=100.0, stale_before=50.0, limit=100)]

        def settle_some():
            start.wait()
            for entry_id in entries[::3]:
                if stores[0].settle(entry_id):
                    settled.append(entry_id)

        with ThreadPoolExecutor(5) as pool:
            sweeps = [pool.submit(sweep, store) for store in stores]
            settler = pool.submit(settle_some)
            settler.result()
            swept = [entry for future in sweeps for entry in future.result()]
        assert len(swept) == len(set(swept))  # nobody refunded twice
        assert sorted(swept + settled) == sorted(entries)  # and every one ended
        ledger = stores[0].ledger(acc.id)
        assert sum(1 for e in ledger if e.kind == "refund") == len(swept)
        assert stores[0].get_account(acc.id).payg == Decimal(40 - len(settled))
        assert stores[0].unsettled_reservations() == 0
    finally:
        for store in stores:
            store.close()


# -- this server's side: paid_call with a Reservations -------------------------------------------


def reservations_for(storage, clock: Clock, **overrides) -> Reservations:
    settings = dict(deadline_s=60.0, heartbeat_s=1.0, stale_s=5.0)
    settings.update(overrides)
    return Reservations(storage, owner="me", clock=clock, **settings)


def test_paid_call_holds_until_delivered_then_settles(storage):
    acc = storage.create_account("a", payg=Decimal(2))
    reservations = reservations_for(storage, Clock())

    async def go():
        async with paid_call(reservations, acc.id, None, "r", "full") as paid:
            assert storage.unsettled_reservations(acc.id) == 1  # held while the engine would run
        return paid

    assert asyncio.run(go()).charged == 1
    assert storage.unsettled_reservations(acc.id) == 0
    assert storage.get_account(acc.id).payg == 1


def test_a_call_that_outlived_its_reservation_is_not_delivered(storage):
    """The deadline passed and another server swept it: the call must fail, not deliver a
    picture whose credit was given back."""
    acc = storage.create_account("a", payg=Decimal(2))
    clock = Clock()
    mine = reservations_for(storage, clock)
    other = reservations_for(storage, clock)

    async def go():
        async with paid_call(mine, acc.id, None, "r", "full"):
            clock.now += 61  # the engine took longer than the deadline
            assert len(await asyncio.to_thread(other.sweep)) == 1

    with pytest.raises(ApiError) as caught:
        asyncio.run(go())
    assert (caught.value.status, caught.value.code) == (503, "reservation_expired")
    assert storage.get_account(acc.id).payg == 2
    assert [e.kind for e in storage.ledger(acc.id)] == ["charge", "refund"]


def test_owners_are_judged_only_after_a_full_unbroken_window(storage):
    """After an outage nobody could heartbeat: a sweeper gives the others a whole staleness
    window to show they are alive before it refunds their reservations."""
    acc = storage.create_account("a", payg=Decimal(1))
    clock = Clock(1000.0)
    storage.heartbeat("other", 900.0)  # silent for 100 s, as anyone would be after an outage
    held(storage, acc.id, "other", deadline=5000.0)
    sweeper = reservations_for(storage, clock)
    sweeper.beat()
    assert sweeper.sweep() == []  # just reconnected: no judging yet
    clock.now += 5
    sweeper.beat()
    assert [s.reason for s in sweeper.sweep()] == ["owner_gone"]


class FlakyRefunds:
    """The real storage, whose refunds fail while `down` (the database restarting)."""

    def __init__(self, storage):
        self.storage, self.down = storage, True

    def refund(self, *args):
        if self.down:
            raise StorageUnavailable("PostgreSQL unavailable: OperationalError")
        return self.storage.refund(*args)

    def __getattr__(self, name):
        return getattr(self.storage, name)


def test_a_refund_the_database_refused_is_retried_by_the_sweep(storage):
    acc = storage.create_account("a", payg=Decimal(2))
    flaky = FlakyRefunds(storage)
    reservations = reservations_for(flaky, Clock())

    async def go():
        async with paid_call(reservations, acc.id, None, "r", "full"):
            raise ApiError(400, "invalid_file_type", "not an image")

    refunded = REGISTRY.get_sample_value("clearbg_credits_refunded_total") or 0.0
    with pytest.raises(ApiError):
        asyncio.run(go())
    assert storage.get_account(acc.id).payg == 1 and reservations.pending
    with pytest.raises(StorageUnavailable):
        reservations.sweep()  # still down: kept for the next round
    assert (REGISTRY.get_sample_value("clearbg_credits_refunded_total") or 0.0) == refunded  # not written yet
    flaky.down = False
    reservations.sweep()
    assert REGISTRY.get_sample_value("clearbg_credits_refunded_total") == refunded + 1  # counted once, when written
    assert not reservations.pending
    assert storage.get_account(acc.id).payg == 2
    assert storage.unsettled_reservations() == 0


class FlakySettles(FlakyRefunds):
    """The real storage, whose settles fail while `down` (the database went away as the call ended)."""

    def refund(self, *args):
        return self.storage.refund(*args)

    def settle(self, *args):
        if self.down:
            raise StorageUnavailable("PostgreSQL unavailable: OperationalError")
        return self.storage.settle(*args)


def test_a_settle_the_database_refused_is_refunded_by_the_next_sweep(storage):
    acc = storage.create_account("a", payg=Decimal(2))
    flaky = FlakySettles(storage)
    reservations = reservations_for(flaky, Clock())

    async def go():
        async with paid_call(reservations, acc.id, None, "r", "full"):
            pass  # the picture was made; delivering it needs the settle

    with pytest.raises(StorageUnavailable):
        asyncio.run(go())
    assert storage.get_account(acc.id).payg == 1 and list(reservations.pending) != []
    refunded = REGISTRY.get_sample_value("clearbg_credits_refunded_total") or 0.0
    flaky.down = False
    reservations.sweep()
    assert not reservations.pending
    assert storage.get_account(acc.id).payg == 2 and storage.unsettled_reservations() == 0
    assert REGISTRY.get_sample_value("clearbg_credits_refunded_total") == refunded + 1


class SlowHeartbeat:
    """The storage, with a heartbeat that waits for `go` once inside (a beat still in its thread
    when the server stops)."""

    def __init__(self, storage):
        self.inner, self.entered, self.go = storage, threading.Event(), threading.Event()

    def heartbeat(self, owner, now):
        self.entered.set()
        assert self.go.wait(10)
        self.inner.heartbeat(owner, now)

    def __getattr__(self, name):
        return getattr(self.inner, name)


def test_a_heartbeat_in_flight_at_retire_does_not_bring_the_row_back(storage):
    acc = storage.create_account("a", payg=Decimal(1))
    slow = SlowHeartbeat(storage)
    reservations = Reservations(slow, owner="stopping", clock=Clock(1000.0), deadline_s=60, heartbeat_s=5, stale_s=15)
    held(storage, acc.id, "stopping", deadline=5000.0)
    with ThreadPoolExecutor(2) as pool:
        beating = pool.submit(reservations.beat)
        assert slow.entered.wait(10)
        retiring = pool.submit(reservations.retire)
        slow.go.set()
        beating.result(10), retiring.result(10)
    reservations.beat()  # and none after it either
    # The owner is gone at once: its reservation is swept although no heartbeat is stale yet.
    assert len(storage.sweep_reservations(now=1001.0, stale_before=990.0)) == 1

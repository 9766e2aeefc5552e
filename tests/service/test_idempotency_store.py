"""Idempotency records on both backends (SQLite, and the real PostgreSQL in a schema of its
own): claims, replays, mismatches, leases, expiry, the size bound with eviction, and one winner
when two storage objects (two servers) claim one key at the same time."""

import threading
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal

import pytest

from service.storage import StoredResponse, open_storage

from both_databases import database_url, storage  # noqa: F401 - fixtures, both databases

TTL, LEASE = 86_400.0, 900.0
NOW = 1_800_000_000.0


@pytest.fixture
def account_id(storage) -> int:
    return storage.create_account("idem", subscription=Decimal(5)).id


def claim(storage, account_id, key="k", fingerprint="f1", owner="r1", now=NOW):
    return storage.claim_idempotency(account_id, key, fingerprint, owner, now=now, ttl_s=TTL, lease_s=LEASE)


def answer(body: bytes = b"png-bytes", summary: str = '{"w":1}') -> StoredResponse:
    return StoredResponse("image/png", (("x-width", "10"), ("x-credits-charged", "1")), summary, body)


def complete(storage, account_id, key="k", owner="r1", body=b"png-bytes", now=NOW + 1, max_bytes=1 << 20):
    return storage.complete_idempotency(account_id, key, owner, answer(body), now=now, max_bytes=max_bytes)


def test_first_claim_starts_and_a_repeat_is_in_flight_until_done_then_replays(storage, account_id):
    assert claim(storage, account_id).outcome == "started"
    assert claim(storage, account_id, owner="r2").outcome == "in_flight"
    assert complete(storage, account_id) is True
    replay = claim(storage, account_id, owner="r3", now=NOW + 5)
    assert replay.outcome == "replay"
    assert replay.response == answer()


def test_other_parameters_under_the_same_key_are_a_mismatch(storage, account_id):
    claim(storage, account_id)
    assert claim(storage, account_id, fingerprint="f2", owner="r2").outcome == "mismatch"
    complete(storage, account_id)
    assert claim(storage, account_id, fingerprint="f2", owner="r2").outcome == "mismatch"


def test_keys_are_per_account(storage, account_id):
    other = storage.create_account("other").id
    claim(storage, account_id)
    assert claim(storage, other, fingerprint="f2").outcome == "started"


def test_a_released_key_runs_anew(storage, account_id):
    claim(storage, account_id)
    storage.release_idempotency(account_id, "k", "r2")  # not the owner: nothing happens
    assert claim(storage, account_id, owner="r3").outcome == "in_flight"
    storage.release_idempotency(account_id, "k", "r1")
    assert claim(storage, account_id, fingerprint="f2", owner="r4").outcome == "started"


def test_a_running_key_past_its_lease_is_taken_over_and_the_old_owner_cannot_complete(storage, account_id):
    claim(storage, account_id)
    assert claim(storage, account_id, owner="r2", now=NOW + LEASE - 1).outcome == "in_flight"
    assert claim(storage, account_id, owner="r2", now=NOW + LEASE + 1).outcome == "started"
    assert complete(storage, account_id, owner="r1") is False
    assert complete(storage, account_id, owner="r2", body=b"second") is True
    assert claim(storage, account_id, owner="r3", now=NOW + LEASE + 2).response.body == b"second"


def test_records_expire_after_their_ttl(storage, account_id):
    claim(storage, account_id)
    complete(storage, account_id)
    assert claim(storage, account_id, owner="r2", now=NOW + TTL - 1).outcome == "replay"
    assert claim(storage, account_id, fingerprint="f2", owner="r2", now=NOW + TTL + 1).outcome == "started"


def test_completing_deletes_expired_records(storage, account_id):
    claim(storage, account_id, key="old")
    complete(storage, account_id, key="old")
    claim(storage, account_id, key="new", now=NOW + TTL + 10)
    complete(storage, account_id, key="new", now=NOW + TTL + 11)
    with storage._read() as db:
        keys = [row[0] for row in db.execute("SELECT idempotency_key FROM idempotency").fetchall()]
    assert keys == ["new"]


def test_kept_answers_stay_within_the_size_bound_oldest_evicted_first(storage, account_id):
    for number in range(4):
        claim(storage, account_id, key=f"k{number}", now=NOW + number)
        complete(storage, account_id, key=f"k{number}", body=bytes([number]) * 400, now=NOW + number, max_bytes=1000)
    outcomes = {}
    for number in range(4):
        found = claim(storage, account_id, key=f"k{number}", owner="again", now=NOW + 10)
        assert found.outcome == "replay"
        outcomes[number] = found.response.body
    # 4 x 400 bytes in 1000: the two oldest went, the two newest are whole.
    assert outcomes == {0: None, 1: None, 2: bytes([2]) * 400, 3: bytes([3]) * 400}
    with storage._read() as db:
        kept = db.execute("SELECT SUM(body_size) FROM idempotency WHERE state = 'done'").fetchone()[0]
    assert int(kept) == 800


def test_an_answer_bigger_than_the_whole_bound_is_not_kept_but_the_key_stays_taken(storage, account_id):
    claim(storage, account_id)
    assert complete(storage, account_id, body=b"x" * 2000, max_bytes=1000) is True
    found = claim(storage, account_id, owner="r2", now=NOW + 5)
    assert found.outcome == "replay" and found.response.body is None
    assert found.response.headers == answer().headers


def test_two_servers_claiming_one_key_at_once_start_it_once(database_url, account_id):
    """Two storage objects (two server processes) race 8 claims each on fresh keys."""
    stores = [open_storage(database_url) for _ in range(2)]
    try:
        for round_ in range(5):
            barrier = threading.Barrier(16)

            def race(index: int) -> str:
                barrier.wait()
                return claim(stores[index % 2], account_id, key=f"race-{round_}", owner=f"r{index}").outcome

            with ThreadPoolExecutor(16) as pool:
                outcomes = list(pool.map(race, range(16)))
            assert sorted(outcomes) == ["in_flight"] * 15 + ["started"], outcomes
    finally:
        for store in stores:
            store.close()

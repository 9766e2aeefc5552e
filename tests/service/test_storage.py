"""SQLite storage: hashed keys, exact charging in the documented order, atomicity under
concurrency, free calls, schema creation on a fresh path."""

import io
import threading
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal

import pytest

from service.bootstrap import ensure_dev_account
from service.storage import InsufficientCredits, InsufficientFreeCalls, open_storage
from service.storage.base import current_period, generate_key, hash_key
from service.storage.sqlite import SqliteStorage

from service_fakes import DEV_KEY


def test_keys_are_stored_hashed_only(storage, account, tmp_path):
    found = storage.find_key(DEV_KEY)
    assert found is not None and found[0].id == account[0].id
    storage.close()
    raw = b"".join(p.read_bytes() for p in (tmp_path / "nested").iterdir())
    assert DEV_KEY.encode() not in raw
    assert hash_key(DEV_KEY).encode() in raw


def test_unknown_and_revoked_keys_are_not_found(storage, account):
    assert storage.find_key(DEV_KEY + "x") is None
    storage.revoke_key(account[1].id)
    assert storage.find_key(DEV_KEY) is None


def test_generated_keys_are_random_and_prefixed():
    keys = {generate_key() for _ in range(100)}
    assert len(keys) == 100
    assert all(k.startswith("cbg_") and len(k) > 40 for k in keys)


def test_charge_takes_subscription_then_payg_then_enterprise(storage):
    acc = storage.create_account("a", subscription=Decimal("1.5"), payg=Decimal("1"), enterprise=Decimal("2.25"))
    after = storage.charge(acc.id, None, "r1", Decimal(1))
    assert (after.subscription, after.payg, after.enterprise) == (Decimal("0.5"), Decimal(1), Decimal("2.25"))
    after = storage.charge(acc.id, None, "r2", Decimal(1))
    assert (after.subscription, after.payg, after.enterprise) == (Decimal(0), Decimal("0.5"), Decimal("2.25"))
    after = storage.charge(acc.id, None, "r3", Decimal(1))
    assert (after.subscription, after.payg, after.enterprise) == (Decimal(0), Decimal(0), Decimal("1.75"))
    entries = storage.ledger(acc.id)
    assert [e.request_id for e in entries] == ["r1", "r2", "r3"]
    assert all(e.kind == "charge" and e.amount == Decimal(1) for e in entries)
    assert entries[-1].enterprise_after == Decimal("1.75")


def test_decimal_balances_are_exact(storage):
    acc = storage.create_account("a", payg=Decimal("0.3"))
    for _ in range(3):
        acc = storage.charge(acc.id, None, "r", Decimal("0.1"))
    assert acc.total == Decimal(0)  # float arithmetic would leave 5.5e-17


def test_short_balance_changes_nothing(storage):
    acc = storage.create_account("a", subscription=Decimal("0.4"), payg=Decimal("0.5"))
    with pytest.raises(InsufficientCredits):
        storage.charge(acc.id, None, "r", Decimal(1))
    again = storage.get_account(acc.id)
    assert (again.subscription, again.payg) == (Decimal("0.4"), Decimal("0.5"))
    assert storage.ledger(acc.id) == []


def test_free_calls_are_counted_and_run_out(storage):
    acc = storage.create_account("a", subscription=Decimal(3), free_calls=2)
    assert acc.free_calls_left() == 2
    acc = storage.use_free_call(acc.id, None, "p1")
    acc = storage.use_free_call(acc.id, None, "p2")
    assert acc.free_calls_left() == 0
    with pytest.raises(InsufficientFreeCalls):
        storage.use_free_call(acc.id, None, "p3")
    assert acc.subscription == Decimal(3)
    assert [e.kind for e in storage.ledger(acc.id)] == ["free_call", "free_call"]
    # A new month starts with the full allowance.
    assert acc.free_calls_left(period="2999-01") == 2
    assert acc.free_calls_period == current_period()


def test_concurrent_charges_never_overdraw(storage):
    acc = storage.create_account("a", subscription=Decimal(6), payg=Decimal(4))
    # A second storage object on the same file stands in for a second server process.
    other = SqliteStorage(storage.path)
    start = threading.Barrier(40)

    def attempt(i: int) -> bool:
        start.wait()
        try:
            (storage if i % 2 else other).charge(acc.id, None, f"r{i}", Decimal(1))
            return True
        except InsufficientCredits:
            return False

    with ThreadPoolExecutor(max_workers=40) as pool:
        outcomes = list(pool.map(attempt, range(40)))
    other.close()
    assert outcomes.count(True) == 10
    assert storage.get_account(acc.id).total == Decimal(0)
    assert len(storage.ledger(acc.id)) == 10


def test_schema_survives_reopen(tmp_path):
    first = open_storage(f"sqlite:///{tmp_path}/deep/dir/db.sqlite")
    acc = first.create_account("a", payg=Decimal(2))
    first.close()
    second = open_storage(f"sqlite:///{tmp_path}/deep/dir/db.sqlite")
    assert second.get_account(acc.id).payg == Decimal(2)
    second.close()


def test_unsupported_database_url():
    with pytest.raises(ValueError):
        open_storage("postgresql://localhost/test")


def test_dev_account_on_empty_database(storage):
    out = io.StringIO()
    ensure_dev_account(storage, None, out)
    line = out.getvalue().strip()
    assert line.startswith("Development API key: cbg_")
    key = line.split(": ", 1)[1]
    acc, _ = storage.find_key(key)
    assert (acc.subscription, acc.payg, acc.enterprise, acc.free_calls_left()) == (45, 5, 0, 50)
    # Second start: nothing printed, nothing created.
    out = io.StringIO()
    ensure_dev_account(storage, None, out)
    assert out.getvalue() == "" and storage.count_accounts() == 1


def test_fixed_dev_key_is_registered_on_an_existing_database(storage):
    ensure_dev_account(storage, None, io.StringIO())
    out = io.StringIO()
    ensure_dev_account(storage, "cbg_fixed_key", out)
    assert out.getvalue() == ""
    acc, _ = storage.find_key("cbg_fixed_key")
    assert acc.id == storage.first_account().id and storage.count_accounts() == 1


def test_revoked_dev_key_is_not_re_enabled(storage):
    ensure_dev_account(storage, "cbg_fixed_key", io.StringIO())
    _, key = storage.find_key("cbg_fixed_key")
    storage.revoke_key(key.id)
    ensure_dev_account(storage, "cbg_fixed_key", io.StringIO())  # must not crash the start
    assert storage.find_key("cbg_fixed_key") is None

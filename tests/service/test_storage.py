"""Storage, on both backends (SQLite, and the real PostgreSQL on 127.0.0.1:5432 in a schema of
its own): hashed keys, exact charging in the documented order, reservations and refunds,
atomicity under concurrency from two storage objects (two server processes), free calls,
operator top-ups, schema migrations."""

import io
import sqlite3
import threading
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal

import pytest

from service.bootstrap import ensure_dev_account
from service.storage import InsufficientCredits, InsufficientFreeCalls, KeyExists, UnknownAccount, open_storage
from service.storage.base import current_period, generate_key, hash_key
from service.storage.sqlite import MIGRATIONS, SqliteStorage

from service_fakes import DEV_KEY

from both_databases import database_url, storage  # noqa: F401 - fixtures, both databases


def reserve(storage, account_id, amount, request_id="r", **kwargs):
    return storage.reserve(account_id, None, request_id, Decimal(amount), **kwargs)


def balances(account):
    return account.subscription, account.payg, account.enterprise


def test_keys_are_stored_hashed_only(storage, account, database_url):
    found = storage.find_key(DEV_KEY)
    assert found is not None and found[0].id == account[0].id
    if database_url.startswith("sqlite"):
        storage.close()
        raw = b"".join(p.read_bytes() for p in storage.path.parent.iterdir())
    else:
        with storage.pool.connection() as conn:
            raw = repr(conn.execute("SELECT * FROM api_keys").fetchall()).encode()
    assert DEV_KEY.encode() not in raw
    assert hash_key(DEV_KEY).encode() in raw


def test_unknown_and_revoked_keys_are_not_found(storage, account):
    assert storage.find_key(DEV_KEY + "x") is None
    assert storage.revoke_key(account[1].id) is True
    assert storage.find_key(DEV_KEY) is None
    assert storage.revoke_key(account[1].id) is False  # already revoked
    (listed,) = storage.list_keys(account[0].id)
    assert listed.revoked_at is not None and listed.prefix == DEV_KEY[:10]


def test_a_key_is_never_registered_twice_and_needs_an_account(storage, account):
    with pytest.raises(KeyExists):
        storage.add_api_key(account[0].id, DEV_KEY)
    with pytest.raises(UnknownAccount):
        storage.add_api_key(999_999, generate_key())


def test_generated_keys_are_random_and_prefixed():
    keys = {generate_key() for _ in range(100)}
    assert len(keys) == 100
    assert all(k.startswith("cbg_") and len(k) > 40 for k in keys)


def test_charge_takes_subscription_then_payg_then_enterprise(storage):
    acc = storage.create_account("a", subscription=Decimal("1.5"), payg=Decimal("1"), enterprise=Decimal("2.25"))
    assert balances(reserve(storage, acc.id, 1, "r1").account) == (Decimal("0.5"), Decimal(1), Decimal("2.25"))
    assert balances(reserve(storage, acc.id, 1, "r2").account) == (Decimal(0), Decimal("0.5"), Decimal("2.25"))
    assert balances(reserve(storage, acc.id, 1, "r3").account) == (Decimal(0), Decimal(0), Decimal("1.75"))
    entries = storage.ledger(acc.id)
    assert [e.request_id for e in entries] == ["r1", "r2", "r3"]
    assert all(e.kind == "charge" and e.amount == Decimal(1) for e in entries)
    assert [(e.subscription_change, e.payg_change, e.enterprise_change) for e in entries] == [
        (Decimal(-1), 0, 0),
        (Decimal("-0.5"), Decimal("-0.5"), 0),
        (0, Decimal("-0.5"), Decimal("-0.5")),
    ]
    assert entries[-1].enterprise_after == Decimal("1.75")
    assert [e.id for e in storage.ledger(acc.id, limit=2)] == [entries[1].id, entries[2].id]


def test_decimal_balances_are_exact(storage):
    acc = storage.create_account("a", payg=Decimal("0.3"))
    for _ in range(3):
        acc = reserve(storage, acc.id, "0.1").account
    assert acc.total == Decimal(0)  # float arithmetic would leave 5.5e-17


def test_short_balance_changes_nothing(storage):
    acc = storage.create_account("a", subscription=Decimal("0.4"), payg=Decimal("0.5"), free_calls=3)
    with pytest.raises(InsufficientCredits):
        reserve(storage, acc.id, 1)
    again = storage.get_account(acc.id)
    assert balances(again) == (Decimal("0.4"), Decimal("0.5"), 0) and again.free_calls_left() == 3
    assert storage.ledger(acc.id) == []


def test_refund_restores_the_same_sources_once(storage):
    acc = storage.create_account("a", subscription=Decimal("0.25"), payg=Decimal("0.5"), enterprise=Decimal(2))
    reservation = reserve(storage, acc.id, 1, "r1")
    assert reservation.paid and reservation.amount == Decimal(1)
    assert balances(reservation.account) == (0, 0, Decimal("1.75"))
    # Another charge in between must not be disturbed by the refund.
    reserve(storage, acc.id, "0.5", "r2")
    after = storage.refund(reservation.entry_id, "r1")
    assert balances(after) == (Decimal("0.25"), Decimal("0.5"), Decimal("1.5"))
    assert storage.refund(reservation.entry_id, "r1") == after  # a second refund is a no-op
    kinds = [(e.kind, e.reverses) for e in storage.ledger(acc.id)]
    assert kinds == [("charge", None), ("charge", None), ("refund", reservation.entry_id)]
    refund = storage.ledger(acc.id)[-1]
    assert (refund.amount, refund.subscription_change, refund.payg_change, refund.enterprise_change) == (
        Decimal(1), Decimal("0.25"), Decimal("0.5"), Decimal("0.25"),
    )


def test_only_charges_and_free_calls_can_be_refunded(storage):
    acc = storage.create_account("a", payg=Decimal(2))
    storage.add_credits(acc.id, "top-up", payg=Decimal(1))
    (credit,) = storage.ledger(acc.id)
    with pytest.raises(ValueError):
        storage.refund(credit.id, "x")
    with pytest.raises(ValueError):
        storage.refund(credit.id + 1000, "x")


def test_free_calls_are_counted_run_out_and_come_back_on_refund(storage):
    acc = storage.create_account("a", subscription=Decimal(3), free_calls=2)
    assert acc.free_calls_left() == 2
    first = storage.reserve_free_call(acc.id, None, "p1")
    assert first.free_call and first.amount == 0
    acc = storage.reserve_free_call(acc.id, None, "p2").account
    assert acc.free_calls_left() == 0
    with pytest.raises(InsufficientFreeCalls):
        storage.reserve_free_call(acc.id, None, "p3")
    assert acc.subscription == Decimal(3)
    assert storage.refund(first.entry_id, "p1").free_calls_left() == 1
    assert [e.kind for e in storage.ledger(acc.id)] == ["free_call", "free_call", "refund"]
    assert storage.ledger(acc.id)[-1].free_calls_change == -1
    # A new month starts with the full allowance.
    assert acc.free_calls_left(period="2999-01") == 2
    assert acc.free_calls_period == current_period()


def test_auto_falls_back_to_a_free_call_only_when_credits_are_short(storage):
    acc = storage.create_account("a", payg=Decimal("1.5"), free_calls=1)
    assert reserve(storage, acc.id, 1, or_free_call=True).paid
    fallback = reserve(storage, acc.id, 1, or_free_call=True)
    assert fallback.free_call and fallback.account.payg == Decimal("0.5")
    with pytest.raises(InsufficientFreeCalls):
        reserve(storage, acc.id, 1, or_free_call=True)


def reopen(storage):
    """A second storage object on the same database: a second server process."""
    return SqliteStorage(storage.path) if isinstance(storage, SqliteStorage) else open_storage(storage.url)


def test_concurrent_reservations_never_overdraw(storage):
    acc = storage.create_account("a", subscription=Decimal(6), payg=Decimal(4))
    other = reopen(storage)
    start = threading.Barrier(40)

    def attempt(i: int) -> bool:
        start.wait()
        try:
            reserve(storage if i % 2 else other, acc.id, 1, f"r{i}")
            return True
        except InsufficientCredits:
            return False

    with ThreadPoolExecutor(max_workers=40) as pool:
        outcomes = list(pool.map(attempt, range(40)))
    other.close()
    assert outcomes.count(True) == 10
    assert storage.get_account(acc.id).total == Decimal(0)
    assert len(storage.ledger(acc.id)) == 10


def test_racing_auto_calls_pay_at_most_once_for_the_last_credit(storage):
    acc = storage.create_account("a", payg=Decimal(1), free_calls=100)
    other = reopen(storage)
    start = threading.Barrier(20)

    def attempt(i: int) -> bool:
        start.wait()
        return reserve(storage if i % 2 else other, acc.id, 1, f"r{i}", or_free_call=True).paid

    with ThreadPoolExecutor(max_workers=20) as pool:
        paid = list(pool.map(attempt, range(20)))
    other.close()
    assert paid.count(True) == 1
    assert storage.get_account(acc.id).free_calls_left() == 100 - 19


def test_concurrent_refunds_give_back_once(storage):
    acc = storage.create_account("a", payg=Decimal(1))
    reservation = reserve(storage, acc.id, 1)
    other = reopen(storage)
    with ThreadPoolExecutor(max_workers=8) as pool:
        list(pool.map(lambda i: (storage if i % 2 else other).refund(reservation.entry_id, "r"), range(8)))
    other.close()
    assert storage.get_account(acc.id).payg == Decimal(1)
    assert [e.kind for e in storage.ledger(acc.id)] == ["charge", "refund"]


def test_operator_credits_and_settings(storage):
    acc = storage.create_account("a", subscription=Decimal(1), free_calls=5, rate_limit_per_minute=100)
    acc = storage.add_credits(acc.id, "op-1", payg=Decimal("2.5"), enterprise=Decimal(10))
    assert balances(acc) == (Decimal(1), Decimal("2.5"), Decimal(10))
    acc = storage.add_credits(acc.id, "op-2", enterprise=Decimal(-4))
    assert acc.enterprise == Decimal(6)
    with pytest.raises(ValueError):
        storage.add_credits(acc.id, "op-3", subscription=Decimal(-2))  # never below zero
    with pytest.raises(ValueError):
        storage.add_credits(acc.id, "op-4")
    assert storage.get_account(acc.id).subscription == Decimal(1)
    credits = storage.ledger(acc.id)
    assert [(e.kind, e.amount) for e in credits] == [("credit", Decimal("12.5")), ("credit", Decimal(-4))]
    acc = storage.update_account(acc.id, free_calls=7, rate_limit_per_minute=20)
    assert (acc.free_calls_allowance, acc.rate_limit_per_minute, acc.name) == (7, 20, "a")
    with pytest.raises(UnknownAccount):
        storage.update_account(999_999, name="x")
    with pytest.raises(UnknownAccount):
        storage.add_credits(999_999, "x", payg=Decimal(1))
    assert [a.id for a in storage.list_accounts()] == [acc.id]


def test_schema_survives_reopen(storage):
    acc = storage.create_account("a", payg=Decimal(2))
    second = reopen(storage)
    assert second.get_account(acc.id).payg == Decimal(2)
    second.close()


def test_sqlite_version_1_database_is_migrated(tmp_path):
    path = tmp_path / "old.db"
    conn = sqlite3.connect(path, isolation_level=None)
    for statement in filter(str.strip, MIGRATIONS[0].split(";")):
        conn.execute(statement)
    conn.execute("PRAGMA user_version = 1")
    conn.execute(
        "INSERT INTO accounts (name, subscription_micros, payg_micros, free_calls_period, created_at) "
        "VALUES ('old', 5000000, 1500000, '2026-11', '2026-11-01T00:00:00')"
    )
    conn.execute(
        "INSERT INTO ledger (account_id, request_id, amount_micros, kind, subscription_after_micros, "
        "payg_after_micros, enterprise_after_micros, free_calls_used_after, created_at) "
        "VALUES (1, 'r0', 1000000, 'charge', 5000000, 1500000, 0, 0, '2026-11-01T00:00:00')"
    )
    conn.close()
    store = SqliteStorage(path)
    assert balances(store.get_account(1)) == (Decimal(5), Decimal("1.5"), 0)
    (old,) = store.ledger(1)
    assert (old.kind, old.amount, old.request_id) == ("charge", Decimal(1), "r0")
    reservation = reserve(store, 1, 2)
    assert balances(reservation.account) == (Decimal(3), Decimal("1.5"), 0)
    assert balances(store.refund(reservation.entry_id, "r")) == (Decimal(5), Decimal("1.5"), 0)
    store.close()
    assert sqlite3.connect(path).execute("PRAGMA user_version").fetchone()[0] == len(MIGRATIONS)


def test_unsupported_database_url():
    with pytest.raises(ValueError):
        open_storage("mysql://localhost/test")


def test_dev_account_on_empty_database(storage):
    out = io.StringIO()
    ensure_dev_account(storage, None, out)
    line, user_line = out.getvalue().strip().splitlines()  # the key, then the dashboard's user
    assert line.startswith("Development API key: cbg_")
    assert user_line.startswith("Development dashboard user: dev@localhost  password: ")
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


def test_servers_starting_together_create_one_dev_account(storage):
    others = [reopen(storage) for _ in range(4)]
    start = threading.Barrier(len(others))

    def boot(store) -> str:
        start.wait()
        out = io.StringIO()
        ensure_dev_account(store, "cbg_shared_dev_key", out)
        return out.getvalue()

    with ThreadPoolExecutor(max_workers=len(others)) as pool:
        printed = list(pool.map(boot, others))
    for store in others:
        store.close()
    assert storage.count_accounts() == 1
    assert sum(bool(text) for text in printed) == 1
    assert storage.find_key("cbg_shared_dev_key") is not None


def test_balances_stay_within_what_both_backends_hold(storage):
    acc = storage.create_account("a", payg=Decimal(999_999_999_999))
    with pytest.raises(ValueError, match="below"):
        storage.add_credits(acc.id, "too-much", payg=Decimal(1))
    with pytest.raises(ValueError, match="below"):
        storage.create_account("b", enterprise=Decimal(10) ** 12)
    assert storage.get_account(acc.id).payg == Decimal(999_999_999_999)

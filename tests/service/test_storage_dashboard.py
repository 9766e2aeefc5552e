"""The dashboard's storage on both backends (SQLite, and the real PostgreSQL in a schema of its
own): users and their accounts, sessions and their end, one-time sign-in links, failed sign-ins,
named keys kept to their account, and usage read from the ledger."""

import datetime as dt
import sqlite3
from decimal import Decimal

import pytest

from service.storage import UnknownAccount, UserExists, open_storage
from service.storage.base import generate_key, hash_key
from service.storage.sqlite import MIGRATIONS
from test_storage import database_url, storage  # noqa: F401 - the same two backends

NOW = dt.datetime.now(dt.timezone.utc)
HOUR = dt.timedelta(hours=1)


def test_users_join_an_account_or_get_their_own(storage):
    acme = storage.create_account("Acme")
    member = storage.create_user("ana@example.com", "hash-a", account_id=acme.id)
    own = storage.create_user("bo@example.com", None, account_name="bo@example.com", free_calls=50)
    assert member.account_id == acme.id and own.account_id != acme.id
    account = storage.get_account(own.account_id)
    assert (account.name, account.total, account.free_calls_allowance) == ("bo@example.com", 0, 50)
    assert storage.find_user("ana@example.com") == member and storage.find_user("nobody@example.com") is None
    assert own.password_hash is None and storage.count_users() == 2
    with pytest.raises(UserExists):
        storage.create_user("ana@example.com", "x", account_name="again")
    with pytest.raises(UnknownAccount):
        storage.create_user("cy@example.com", "x", account_id=999_999)
    # A refused sign-up leaves no account behind.
    assert [a.name for a in storage.list_accounts()] == ["Acme", "bo@example.com"]


def test_sessions_are_hashed_expire_and_end_with_a_password_change(storage):
    user = storage.create_user("ana@example.com", "h1", account_name="ana")
    storage.create_session(user.id, "token-1", NOW + HOUR)
    storage.create_session(user.id, "token-2", NOW + HOUR)
    storage.create_session(user.id, "token-old", NOW - HOUR)
    assert storage.find_session("token-1").id == user.id
    assert storage.find_session("token-old") is None and storage.find_session("nope") is None
    storage.end_session("token-1")
    assert storage.find_session("token-1") is None and storage.find_session("token-2") is not None
    storage.set_password(user.id, "h2")
    assert storage.find_session("token-2") is None
    assert storage.find_user("ana@example.com").password_hash == "h2"


def test_session_tokens_are_stored_hashed(storage, database_url):
    user = storage.create_user("ana@example.com", "h", account_name="ana")
    storage.create_session(user.id, "secret-session-token", NOW + HOUR)
    storage.create_sign_in_link(user.id, "secret-link-token", NOW + HOUR)
    if database_url.startswith("sqlite"):
        with sqlite3.connect(storage.path) as conn:
            rows = repr(conn.execute("SELECT * FROM web_sessions").fetchall() + conn.execute("SELECT * FROM sign_in_links").fetchall())
    else:
        with storage.pool.connection() as conn:
            rows = repr(conn.execute("SELECT * FROM web_sessions").fetchall() + conn.execute("SELECT * FROM sign_in_links").fetchall())
    assert "secret-session-token" not in rows and "secret-link-token" not in rows
    assert hash_key("secret-session-token") in rows


def test_sign_in_links_work_once_and_not_after_expiry(storage):
    user = storage.create_user("ana@example.com", None, account_name="ana")
    storage.create_sign_in_link(user.id, "link", NOW + HOUR)
    storage.create_sign_in_link(user.id, "stale", NOW - HOUR)
    assert storage.redeem_sign_in_link("link").id == user.id
    assert storage.redeem_sign_in_link("link") is None
    assert storage.redeem_sign_in_link("stale") is None
    assert storage.redeem_sign_in_link("unknown") is None


def test_sign_in_failures_are_counted_per_email_and_ip_since_a_moment(storage):
    for _ in range(3):
        storage.record_sign_in_failure("ana@example.com", "10.0.0.1")
    storage.record_sign_in_failure("bo@example.com", "10.0.0.1")
    counted = storage.sign_in_failures("ana@example.com", "10.0.0.1", NOW - HOUR)
    assert (counted.by_email, counted.by_ip) == (3, 4)
    assert dt.datetime.fromisoformat(counted.oldest_by_email) >= NOW - dt.timedelta(minutes=1)
    later = storage.sign_in_failures("ana@example.com", "10.0.0.1", dt.datetime.now(dt.timezone.utc) + HOUR)
    assert (later.by_email, later.by_ip, later.oldest_by_email) == (0, 0, None)
    storage.clear_sign_in_failures("ana@example.com")
    counted = storage.sign_in_failures("ana@example.com", "10.0.0.1", NOW - HOUR)
    assert (counted.by_email, counted.by_ip) == (0, 1)


def test_named_keys_stay_with_their_account_and_note_their_last_use(storage):
    ana = storage.create_account("ana", subscription=Decimal(5))
    bo = storage.create_account("bo")
    key = storage.add_api_key(ana.id, generate_key(), "build server")
    assert (key.name, key.last_used_at) == ("build server", None)
    assert storage.get_key(key.id, bo.id) is None and storage.get_key(key.id, ana.id) == key
    assert storage.revoke_key(key.id, bo.id) is False
    assert storage.get_key(key.id, ana.id).revoked_at is None
    storage.reserve(ana.id, key.id, "r1", Decimal(1), size="hd")
    used = storage.get_key(key.id, ana.id)
    assert used.last_used_at is not None and storage.list_keys(ana.id) == [used]
    assert storage.revoke_key(key.id, ana.id) is True


def test_usage_by_day_and_recent_calls_come_from_the_ledger(storage):
    ana = storage.create_account("ana", payg=Decimal(10), free_calls=5)
    other = storage.create_account("other", payg=Decimal(10))
    key = storage.add_api_key(ana.id, generate_key(), "ci")
    storage.reserve(ana.id, key.id, "a", Decimal(1), size="hd")
    refunded = storage.reserve(ana.id, key.id, "b", Decimal(1), size="full")
    storage.refund(refunded.entry_id, "b")
    storage.reserve(ana.id, None, "c", Decimal("0.5"), size="medium")
    storage.reserve_free_call(ana.id, key.id, "d")
    storage.add_credits(ana.id, "top-up", payg=Decimal(1))
    storage.reserve(other.id, None, "x", Decimal(1), size="hd")
    [today] = storage.usage_by_day(ana.id, NOW - dt.timedelta(days=1))
    assert today.day == dt.datetime.now(dt.timezone.utc).date().isoformat()
    assert (today.images, today.credits) == (3, Decimal("1.5"))
    assert storage.usage_by_day(ana.id, NOW + HOUR) == []
    calls = storage.recent_calls(ana.id, 10)
    assert [(c.size, c.amount, c.refunded, c.key_name) for c in calls] == [
        ("preview", 0, False, "ci"),
        ("medium", Decimal("0.5"), False, ""),
        ("full", 1, True, "ci"),
        ("hd", 1, False, "ci"),
    ]
    assert calls[0].key_prefix == key.prefix
    assert len(storage.recent_calls(ana.id, 2)) == 2


def test_auto_falling_back_to_a_free_call_is_recorded_as_preview(storage):
    ana = storage.create_account("ana", free_calls=1)
    storage.reserve(ana.id, None, "a", Decimal(1), or_free_call=True, size="full")
    assert [c.size for c in storage.recent_calls(ana.id, 5)] == ["preview"]


def test_sqlite_migration_keeps_keys_and_ledger(tmp_path):
    path = tmp_path / "v2.db"
    conn = sqlite3.connect(path, isolation_level=None)
    for script in MIGRATIONS[:2]:
        for statement in filter(str.strip, script.split(";")):
            conn.execute(statement)
    conn.execute("PRAGMA user_version = 2")
    conn.execute(
        "INSERT INTO accounts (name, subscription, free_calls_period, created_at) VALUES ('old', 5000000, '2026-11', 'x')"
    )
    conn.execute(
        "INSERT INTO api_keys (account_id, key_hash, prefix, created_at) VALUES (1, ?, 'cbg_old', '2026-11-01T00:00:00.000+00:00')",
        (hash_key("cbg_old_key"),),
    )
    conn.close()
    storage = open_storage(f"sqlite:///{path}")
    try:
        account, key = storage.find_key("cbg_old_key")
        assert (account.name, key.name, key.last_used_at) == ("old", "", None)
        assert storage.count_users() == 0
    finally:
        storage.close()

"""SQLite backend (the default, zero setup): WAL, one connection per thread, and
`BEGIN IMMEDIATE` around every change, so concurrent charges (from threads, or from other
server processes on the same file) are serialised by SQLite's write lock.

Credits are stored as integer micro-credits: exact, and comparable in SQL.
"""

from __future__ import annotations

import datetime as dt
import pathlib
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from decimal import ROUND_HALF_EVEN, Decimal

from service.storage.base import StorageUnavailable
from service.storage.sql import SqlStorage

MICROS = Decimal(1_000_000)

# Each entry moves the schema from version i to i + 1 (PRAGMA user_version), in one
# transaction with the version bump.
MIGRATIONS: tuple[str, ...] = (
    """
    CREATE TABLE accounts (
        id INTEGER PRIMARY KEY,
        name TEXT NOT NULL,
        subscription_micros INTEGER NOT NULL DEFAULT 0 CHECK (subscription_micros >= 0),
        payg_micros INTEGER NOT NULL DEFAULT 0 CHECK (payg_micros >= 0),
        enterprise_micros INTEGER NOT NULL DEFAULT 0 CHECK (enterprise_micros >= 0),
        free_calls_allowance INTEGER NOT NULL DEFAULT 0,
        free_calls_used INTEGER NOT NULL DEFAULT 0,
        free_calls_period TEXT NOT NULL,
        rate_limit_per_minute INTEGER NOT NULL DEFAULT 500,
        created_at TEXT NOT NULL
    );
    CREATE TABLE api_keys (
        id INTEGER PRIMARY KEY,
        account_id INTEGER NOT NULL REFERENCES accounts(id),
        key_hash TEXT NOT NULL UNIQUE,
        prefix TEXT NOT NULL,
        created_at TEXT NOT NULL,
        revoked_at TEXT
    );
    CREATE INDEX api_keys_account ON api_keys(account_id);
    CREATE TABLE ledger (
        id INTEGER PRIMARY KEY,
        account_id INTEGER NOT NULL REFERENCES accounts(id),
        key_id INTEGER REFERENCES api_keys(id),
        request_id TEXT NOT NULL,
        amount_micros INTEGER NOT NULL,
        kind TEXT NOT NULL CHECK (kind IN ('charge', 'refund', 'free_call')),
        subscription_after_micros INTEGER NOT NULL,
        payg_after_micros INTEGER NOT NULL,
        enterprise_after_micros INTEGER NOT NULL,
        free_calls_used_after INTEGER NOT NULL,
        created_at TEXT NOT NULL
    );
    CREATE INDEX ledger_account ON ledger(account_id, id);
    """,
    # 2: the column names both backends share (still micro-credits here), and ledger rows that
    # can be reversed exactly (signed per-source changes; a refund names what it reverses,
    # once) or record an operator's top-up (kind credit). Rows from version 1 were final
    # charges and free calls: their per-source changes are unknown and left at 0.
    """
    ALTER TABLE accounts RENAME COLUMN subscription_micros TO subscription;
    ALTER TABLE accounts RENAME COLUMN payg_micros TO payg;
    ALTER TABLE accounts RENAME COLUMN enterprise_micros TO enterprise;
    CREATE TABLE ledger_v2 (
        id INTEGER PRIMARY KEY,
        account_id INTEGER NOT NULL REFERENCES accounts(id),
        key_id INTEGER REFERENCES api_keys(id),
        request_id TEXT NOT NULL,
        kind TEXT NOT NULL CHECK (kind IN ('charge', 'free_call', 'refund', 'credit')),
        amount INTEGER NOT NULL,
        subscription_change INTEGER NOT NULL DEFAULT 0,
        payg_change INTEGER NOT NULL DEFAULT 0,
        enterprise_change INTEGER NOT NULL DEFAULT 0,
        free_calls_change INTEGER NOT NULL DEFAULT 0,
        subscription_after INTEGER NOT NULL,
        payg_after INTEGER NOT NULL,
        enterprise_after INTEGER NOT NULL,
        free_calls_used_after INTEGER NOT NULL,
        reverses INTEGER UNIQUE REFERENCES ledger_v2(id),
        created_at TEXT NOT NULL
    );
    INSERT INTO ledger_v2 (id, account_id, key_id, request_id, kind, amount, free_calls_change,
        subscription_after, payg_after, enterprise_after, free_calls_used_after, created_at)
    SELECT id, account_id, key_id, request_id, kind, amount_micros,
        CASE kind WHEN 'free_call' THEN 1 ELSE 0 END,
        subscription_after_micros, payg_after_micros, enterprise_after_micros, free_calls_used_after, created_at
    FROM ledger;
    DROP TABLE ledger;
    ALTER TABLE ledger_v2 RENAME TO ledger;
    CREATE INDEX ledger_account ON ledger(account_id, id);
    """,
    # 3: answers kept for replays under an Idempotency-Key (service/storage/idempotency_sql.py).
    """
    CREATE TABLE idempotency (
        account_id INTEGER NOT NULL REFERENCES accounts(id),
        idempotency_key TEXT NOT NULL,
        fingerprint TEXT NOT NULL,
        state TEXT NOT NULL CHECK (state IN ('running', 'done', 'evicted')),
        owner TEXT NOT NULL,
        expires_at REAL NOT NULL,
        lease_until REAL NOT NULL,
        completed_at REAL,
        content_type TEXT,
        headers TEXT,
        summary TEXT,
        body BLOB,
        body_size INTEGER NOT NULL DEFAULT 0,
        PRIMARY KEY (account_id, idempotency_key)
    );
    CREATE INDEX idempotency_expiry ON idempotency(expires_at);
    CREATE INDEX idempotency_kept ON idempotency(state, completed_at);
    """,
    # 4: the dashboard (service/dashboard): named keys and their last use, the size of each
    # call, people who sign in (users), their sessions, one-time sign-in links and failed
    # sign-ins. Tokens are kept as SHA-256 hashes, like keys.
    """
    ALTER TABLE api_keys ADD COLUMN name TEXT NOT NULL DEFAULT '';
    ALTER TABLE api_keys ADD COLUMN last_used_at TEXT;
    ALTER TABLE ledger ADD COLUMN size TEXT;
    CREATE INDEX ledger_account_time ON ledger(account_id, created_at);
    CREATE TABLE users (
        id INTEGER PRIMARY KEY,
        account_id INTEGER NOT NULL REFERENCES accounts(id),
        email TEXT NOT NULL UNIQUE,
        password_hash TEXT,
        created_at TEXT NOT NULL
    );
    CREATE INDEX users_account ON users(account_id);
    CREATE TABLE web_sessions (
        token_hash TEXT PRIMARY KEY,
        user_id INTEGER NOT NULL REFERENCES users(id),
        created_at TEXT NOT NULL,
        expires_at TEXT NOT NULL
    );
    CREATE INDEX web_sessions_user ON web_sessions(user_id);
    CREATE TABLE sign_in_links (
        token_hash TEXT PRIMARY KEY,
        user_id INTEGER NOT NULL REFERENCES users(id),
        created_at TEXT NOT NULL,
        expires_at TEXT NOT NULL,
        used_at TEXT
    );
    CREATE TABLE sign_in_failures (
        id INTEGER PRIMARY KEY,
        email TEXT NOT NULL,
        ip TEXT NOT NULL,
        created_at TEXT NOT NULL
    );
    CREATE INDEX sign_in_failures_email ON sign_in_failures(email, created_at);
    CREATE INDEX sign_in_failures_ip ON sign_in_failures(ip, created_at);
    CREATE INDEX sign_in_failures_time ON sign_in_failures(created_at);
    """,
    # 5: crash-safe credits (service/reservations.py): a charge or free call held until its
    # result is delivered, by a server instance (owner) that heartbeats, until a deadline;
    # swept (refunded) by any server once its owner is gone or its deadline passed.
    """
    CREATE TABLE reservations (
        entry_id INTEGER PRIMARY KEY REFERENCES ledger(id),
        owner TEXT NOT NULL,
        deadline REAL NOT NULL
    );
    CREATE INDEX reservations_deadline ON reservations(deadline);
    CREATE INDEX reservations_owner ON reservations(owner);
    CREATE TABLE server_instances (
        owner TEXT PRIMARY KEY,
        started_at REAL NOT NULL,
        heartbeat_at REAL NOT NULL
    );
    """,
)


def to_micros(amount: Decimal) -> int:
    return int((Decimal(amount) * MICROS).quantize(Decimal(1), rounding=ROUND_HALF_EVEN))


def from_micros(micros: int) -> Decimal:
    return Decimal(micros) / MICROS


class SqliteStorage(SqlStorage):
    UNIQUE_VIOLATION = sqlite3.IntegrityError
    DAY_SQL = "substr(l.created_at, 1, 10)"  # ISO 8601 text in UTC

    def __init__(self, path: str | pathlib.Path, busy_timeout_s: float = 10.0):
        self.path = pathlib.Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._busy_timeout_s = busy_timeout_s
        self._local = threading.local()
        # Each thread's connection with the lock it holds while using it: close() takes each lock
        # before closing, since closing a connection another thread is running a statement on can
        # crash the process (seen: a heartbeat thread's write during a test's teardown, SIGSEGV).
        self._all: list[_Held] = []
        self._all_lock = threading.Lock()
        self._migrate()

    # -- connections and transactions -------------------------------------------------

    def _held(self) -> "_Held":
        held = getattr(self._local, "held", None)
        if held is None or not held.open:
            # isolation_level=None: no implicit transactions; each change opens its own.
            conn = sqlite3.connect(
                self.path, timeout=self._busy_timeout_s, isolation_level=None, check_same_thread=False
            )
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.execute("PRAGMA foreign_keys=ON")
            held = _Held(conn)
            self._local.held = held
            with self._all_lock:
                self._all.append(held)
        return held

    @contextmanager
    def _using(self) -> Iterator[sqlite3.Connection]:
        """This thread's connection, held against close() while in use (a call still finishing
        after close() opens a new one, as before)."""
        while True:
            held = self._held()
            with held.lock:
                if held.open:
                    yield held.conn
                    return

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """A write transaction that holds SQLite's write lock from its first statement, so
        a read-check-write (balance >= amount, then update) cannot interleave with another."""
        with self._using() as conn:
            try:
                conn.execute("BEGIN IMMEDIATE")
            except sqlite3.OperationalError as exc:  # busy past the timeout: another writer holds the file
                raise StorageUnavailable(f"SQLite unavailable: {exc}") from exc
            try:
                yield conn
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")

    @contextmanager
    def _read(self) -> Iterator[sqlite3.Connection]:
        with self._using() as conn:
            yield conn

    def _migrate(self) -> None:
        conn = self._held().conn
        # Foreign keys are checked per statement; rebuilding a table needs them off (they
        # cannot change inside a transaction), and foreign_key_check proves nothing broke.
        conn.execute("PRAGMA foreign_keys=OFF")
        try:
            with self._write() as db:
                version = db.execute("PRAGMA user_version").fetchone()[0]
                for number, script in enumerate(MIGRATIONS[version:], start=version + 1):
                    for statement in filter(str.strip, script.split(";")):
                        db.execute(statement)
                    db.execute(f"PRAGMA user_version = {number}")
                broken = db.execute("PRAGMA foreign_key_check").fetchall()
                if broken:
                    raise RuntimeError(f"migration broke foreign keys: {broken[:3]}")
        finally:
            conn.execute("PRAGMA foreign_keys=ON")

    def close(self) -> None:
        with self._all_lock:
            for held in self._all:
                with held.lock:  # a statement running on it finishes first
                    held.open = False
                    held.conn.close()
            self._all.clear()  # each thread's next call opens a new connection (its old one is marked closed)

    # -- representation ------------------------------------------------------------------

    def _to_db(self, amount: Decimal) -> int:
        return to_micros(amount)

    def _from_db(self, value: int) -> Decimal:
        return from_micros(value)

    def _time_to_db(self, when: dt.datetime) -> str:
        return when.astimezone(dt.timezone.utc).isoformat(timespec="milliseconds")

    def _time_from_db(self, value: str) -> str:
        return value


class _Held:
    """A thread's connection and the lock it holds while using it."""

    def __init__(self, conn: sqlite3.Connection):
        self.conn = conn
        self.lock = threading.RLock()
        self.open = True

"""SQLite backend: WAL, one connection per thread, `BEGIN IMMEDIATE` around every change so
concurrent charges (from threads or from other server processes on the same file) are
serialised by SQLite itself.

Credits are stored as integer micro-credits: exact, and comparable in SQL.
"""

from __future__ import annotations

import datetime as dt
import hmac
import pathlib
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from decimal import ROUND_HALF_EVEN, Decimal

from service.storage.base import (
    DISPLAY_PREFIX_LENGTH,
    Account,
    ApiKey,
    InsufficientCredits,
    InsufficientFreeCalls,
    KeyExists,
    LedgerEntry,
    current_period,
    hash_key,
)

MICROS = Decimal(1_000_000)

# Each entry moves the schema from version i to i + 1 (PRAGMA user_version).
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
)


def to_micros(amount: Decimal) -> int:
    return int((Decimal(amount) * MICROS).quantize(Decimal(1), rounding=ROUND_HALF_EVEN))


def from_micros(micros: int) -> Decimal:
    return Decimal(micros) / MICROS


def _now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="milliseconds")


_ACCOUNT_COLUMNS = (
    "id, name, subscription_micros, payg_micros, enterprise_micros, free_calls_allowance, "
    "free_calls_used, free_calls_period, rate_limit_per_minute"
)


def _account(row: tuple) -> Account:
    return Account(
        id=row[0],
        name=row[1],
        subscription=from_micros(row[2]),
        payg=from_micros(row[3]),
        enterprise=from_micros(row[4]),
        free_calls_allowance=row[5],
        free_calls_used=row[6],
        free_calls_period=row[7],
        rate_limit_per_minute=row[8],
    )


class SqliteStorage:
    def __init__(self, path: str | pathlib.Path, busy_timeout_s: float = 10.0):
        self.path = pathlib.Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._busy_timeout_s = busy_timeout_s
        self._local = threading.local()
        self._all: list[sqlite3.Connection] = []
        self._all_lock = threading.Lock()
        self._migrate()

    # -- connections and transactions -------------------------------------------------

    def _connection(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            # isolation_level=None: no implicit transactions; each change opens its own.
            conn = sqlite3.connect(
                self.path, timeout=self._busy_timeout_s, isolation_level=None, check_same_thread=False
            )
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.execute("PRAGMA foreign_keys=ON")
            self._local.conn = conn
            with self._all_lock:
                self._all.append(conn)
        return conn

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """A write transaction that holds SQLite's write lock from its first statement, so
        a read-check-write (balance >= amount, then update) cannot interleave with another."""
        conn = self._connection()
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield conn
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")

    def _migrate(self) -> None:
        with self._write() as conn:
            version = conn.execute("PRAGMA user_version").fetchone()[0]
            for number, script in enumerate(MIGRATIONS[version:], start=version + 1):
                for statement in filter(str.strip, script.split(";")):
                    conn.execute(statement)
                conn.execute(f"PRAGMA user_version = {number}")

    def close(self) -> None:
        with self._all_lock:
            for conn in self._all:
                conn.close()
            self._all.clear()
        self._local = threading.local()

    # -- accounts and keys -------------------------------------------------------------

    def create_account(
        self,
        name: str,
        *,
        subscription: Decimal = Decimal(0),
        payg: Decimal = Decimal(0),
        enterprise: Decimal = Decimal(0),
        free_calls: int = 0,
        rate_limit_per_minute: int = 500,
    ) -> Account:
        with self._write() as conn:
            cursor = conn.execute(
                "INSERT INTO accounts (name, subscription_micros, payg_micros, enterprise_micros, "
                "free_calls_allowance, free_calls_used, free_calls_period, rate_limit_per_minute, "
                "created_at) VALUES (?, ?, ?, ?, ?, 0, ?, ?, ?)",
                (
                    name,
                    to_micros(subscription),
                    to_micros(payg),
                    to_micros(enterprise),
                    free_calls,
                    current_period(),
                    rate_limit_per_minute,
                    _now(),
                ),
            )
            return self._get_account(conn, cursor.lastrowid)

    @staticmethod
    def _get_account(conn: sqlite3.Connection, account_id: int) -> Account | None:
        row = conn.execute(f"SELECT {_ACCOUNT_COLUMNS} FROM accounts WHERE id = ?", (account_id,)).fetchone()
        return _account(row) if row else None

    def get_account(self, account_id: int) -> Account | None:
        return self._get_account(self._connection(), account_id)

    def count_accounts(self) -> int:
        return self._connection().execute("SELECT count(*) FROM accounts").fetchone()[0]

    def first_account(self) -> Account | None:
        row = self._connection().execute(f"SELECT {_ACCOUNT_COLUMNS} FROM accounts ORDER BY id LIMIT 1").fetchone()
        return _account(row) if row else None

    def add_api_key(self, account_id: int, key: str) -> ApiKey:
        created = _now()
        with self._write() as conn:
            try:
                cursor = conn.execute(
                    "INSERT INTO api_keys (account_id, key_hash, prefix, created_at) VALUES (?, ?, ?, ?)",
                    (account_id, hash_key(key), key[:DISPLAY_PREFIX_LENGTH], created),
                )
            except sqlite3.IntegrityError:
                raise KeyExists("this API key is already registered") from None
            return ApiKey(cursor.lastrowid, account_id, key[:DISPLAY_PREFIX_LENGTH], created, None)

    def find_key(self, key: str) -> tuple[Account, ApiKey] | None:
        digest = hash_key(key)
        conn = self._connection()
        row = conn.execute(
            "SELECT id, account_id, key_hash, prefix, created_at, revoked_at FROM api_keys "
            "WHERE key_hash = ? AND revoked_at IS NULL",
            (digest,),
        ).fetchone()
        if row is None or not hmac.compare_digest(row[2], digest):
            return None
        account = self._get_account(conn, row[1])
        if account is None:
            return None
        return account, ApiKey(row[0], row[1], row[3], row[4], row[5])

    def revoke_key(self, key_id: int) -> None:
        with self._write() as conn:
            conn.execute("UPDATE api_keys SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL", (_now(), key_id))

    # -- money -------------------------------------------------------------------------

    def charge(self, account_id: int, key_id: int | None, request_id: str, amount: Decimal) -> Account:
        wanted = to_micros(amount)
        if wanted <= 0:
            raise ValueError("a charge must be positive")
        with self._write() as conn:
            account = self._get_account(conn, account_id)
            if account is None:
                raise KeyError(account_id)
            balances = [to_micros(account.subscription), to_micros(account.payg), to_micros(account.enterprise)]
            if sum(balances) < wanted:
                raise InsufficientCredits(account, Decimal(amount))
            left = wanted
            for i, balance in enumerate(balances):  # subscription, then payg, then enterprise
                taken = min(balance, left)
                balances[i] -= taken
                left -= taken
            conn.execute(
                "UPDATE accounts SET subscription_micros = ?, payg_micros = ?, enterprise_micros = ? WHERE id = ?",
                (*balances, account_id),
            )
            self._append_ledger(conn, account_id, key_id, request_id, wanted, "charge", balances, account.free_calls_used)
            return self._get_account(conn, account_id)

    def use_free_call(self, account_id: int, key_id: int | None, request_id: str) -> Account:
        period = current_period()
        with self._write() as conn:
            account = self._get_account(conn, account_id)
            if account is None:
                raise KeyError(account_id)
            if account.free_calls_left(period) <= 0:
                raise InsufficientFreeCalls(account)
            used = (account.free_calls_used if account.free_calls_period == period else 0) + 1
            conn.execute(
                "UPDATE accounts SET free_calls_used = ?, free_calls_period = ? WHERE id = ?",
                (used, period, account_id),
            )
            balances = [to_micros(account.subscription), to_micros(account.payg), to_micros(account.enterprise)]
            self._append_ledger(conn, account_id, key_id, request_id, 0, "free_call", balances, used)
            return self._get_account(conn, account_id)

    @staticmethod
    def _append_ledger(
        conn: sqlite3.Connection,
        account_id: int,
        key_id: int | None,
        request_id: str,
        amount_micros: int,
        kind: str,
        balances: list[int],
        free_calls_used: int,
    ) -> None:
        conn.execute(
            "INSERT INTO ledger (account_id, key_id, request_id, amount_micros, kind, subscription_after_micros, "
            "payg_after_micros, enterprise_after_micros, free_calls_used_after, created_at) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (account_id, key_id, request_id, amount_micros, kind, *balances, free_calls_used, _now()),
        )

    def ledger(self, account_id: int) -> list[LedgerEntry]:
        rows = self._connection().execute(
            "SELECT id, account_id, key_id, request_id, amount_micros, kind, subscription_after_micros, "
            "payg_after_micros, enterprise_after_micros, free_calls_used_after, created_at "
            "FROM ledger WHERE account_id = ? ORDER BY id",
            (account_id,),
        ).fetchall()
        return [
            LedgerEntry(
                id=r[0],
                account_id=r[1],
                key_id=r[2],
                request_id=r[3],
                amount=from_micros(r[4]),
                kind=r[5],
                subscription_after=from_micros(r[6]),
                payg_after=from_micros(r[7]),
                enterprise_after=from_micros(r[8]),
                free_calls_used_after=r[9],
                created_at=r[10],
            )
            for r in rows
        ]

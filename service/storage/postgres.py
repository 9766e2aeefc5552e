"""PostgreSQL backend (CLEARBG_DATABASE_URL=postgresql://...): psycopg 3 with a
psycopg_pool connection pool, NUMERIC credits, and `SELECT ... FOR UPDATE` on the account row
inside each change, so any number of server processes can share one database.

The schema is migrated at start under a transaction-scoped advisory lock (servers starting
together wait for each other; PostgreSQL's DDL is transactional, so a failed migration leaves
nothing half-done). The schema lives in the connection's search_path, so a URL such as
`postgresql://host/db?options=-csearch_path%3Dclearbg` keeps it in its own schema.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Any

import psycopg
from psycopg_pool import ConnectionPool

from service.storage.base import StorageUnavailable
from service.storage.sql import SqlStorage

SCALE = Decimal("0.000001")  # NUMERIC(20, 6): the same micro-credit precision as SQLite
MICROS = Decimal(1_000_000)

# Each entry moves the schema from version i to i + 1 (the clearbg_schema table).
MIGRATIONS: tuple[str, ...] = (
    """
    CREATE TABLE accounts (
        id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        name TEXT NOT NULL,
        subscription NUMERIC(20, 6) NOT NULL DEFAULT 0 CHECK (subscription >= 0),
        payg NUMERIC(20, 6) NOT NULL DEFAULT 0 CHECK (payg >= 0),
        enterprise NUMERIC(20, 6) NOT NULL DEFAULT 0 CHECK (enterprise >= 0),
        free_calls_allowance INTEGER NOT NULL DEFAULT 0 CHECK (free_calls_allowance >= 0),
        free_calls_used INTEGER NOT NULL DEFAULT 0,
        free_calls_period TEXT NOT NULL,
        rate_limit_per_minute INTEGER NOT NULL DEFAULT 500 CHECK (rate_limit_per_minute >= 1),
        created_at TIMESTAMPTZ NOT NULL
    );
    CREATE TABLE api_keys (
        id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        account_id BIGINT NOT NULL REFERENCES accounts(id),
        key_hash TEXT NOT NULL UNIQUE,
        prefix TEXT NOT NULL,
        created_at TIMESTAMPTZ NOT NULL,
        revoked_at TIMESTAMPTZ
    );
    CREATE INDEX api_keys_account ON api_keys(account_id);
    CREATE TABLE ledger (
        id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        account_id BIGINT NOT NULL REFERENCES accounts(id),
        key_id BIGINT REFERENCES api_keys(id),
        request_id TEXT NOT NULL,
        kind TEXT NOT NULL CHECK (kind IN ('charge', 'free_call', 'refund', 'credit')),
        amount NUMERIC(20, 6) NOT NULL,
        subscription_change NUMERIC(20, 6) NOT NULL DEFAULT 0,
        payg_change NUMERIC(20, 6) NOT NULL DEFAULT 0,
        enterprise_change NUMERIC(20, 6) NOT NULL DEFAULT 0,
        free_calls_change INTEGER NOT NULL DEFAULT 0,
        subscription_after NUMERIC(20, 6) NOT NULL,
        payg_after NUMERIC(20, 6) NOT NULL,
        enterprise_after NUMERIC(20, 6) NOT NULL,
        free_calls_used_after INTEGER NOT NULL,
        reverses BIGINT UNIQUE REFERENCES ledger(id),
        created_at TIMESTAMPTZ NOT NULL
    );
    CREATE INDEX ledger_account ON ledger(account_id, id);
    """,
    # 2: answers kept for replays under an Idempotency-Key (service/storage/idempotency_sql.py).
    """
    CREATE TABLE idempotency (
        account_id BIGINT NOT NULL REFERENCES accounts(id),
        idempotency_key TEXT NOT NULL,
        fingerprint TEXT NOT NULL,
        state TEXT NOT NULL CHECK (state IN ('running', 'done', 'evicted')),
        owner TEXT NOT NULL,
        expires_at DOUBLE PRECISION NOT NULL,
        lease_until DOUBLE PRECISION NOT NULL,
        completed_at DOUBLE PRECISION,
        content_type TEXT,
        headers TEXT,
        summary TEXT,
        body BYTEA,
        body_size BIGINT NOT NULL DEFAULT 0,
        PRIMARY KEY (account_id, idempotency_key)
    );
    CREATE INDEX idempotency_expiry ON idempotency(expires_at);
    CREATE INDEX idempotency_kept ON idempotency(state, completed_at);
    """,
    # 3: the dashboard (service/dashboard), as SQLite's migration 4.
    """
    ALTER TABLE api_keys ADD COLUMN name TEXT NOT NULL DEFAULT '';
    ALTER TABLE api_keys ADD COLUMN last_used_at TIMESTAMPTZ;
    ALTER TABLE ledger ADD COLUMN size TEXT;
    CREATE INDEX ledger_account_time ON ledger(account_id, created_at);
    CREATE TABLE users (
        id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        account_id BIGINT NOT NULL REFERENCES accounts(id),
        email TEXT NOT NULL UNIQUE,
        password_hash TEXT,
        created_at TIMESTAMPTZ NOT NULL
    );
    CREATE INDEX users_account ON users(account_id);
    CREATE TABLE web_sessions (
        token_hash TEXT PRIMARY KEY,
        user_id BIGINT NOT NULL REFERENCES users(id),
        created_at TIMESTAMPTZ NOT NULL,
        expires_at TIMESTAMPTZ NOT NULL
    );
    CREATE INDEX web_sessions_user ON web_sessions(user_id);
    CREATE TABLE sign_in_links (
        token_hash TEXT PRIMARY KEY,
        user_id BIGINT NOT NULL REFERENCES users(id),
        created_at TIMESTAMPTZ NOT NULL,
        expires_at TIMESTAMPTZ NOT NULL,
        used_at TIMESTAMPTZ
    );
    CREATE TABLE sign_in_failures (
        id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        email TEXT NOT NULL,
        ip TEXT NOT NULL,
        created_at TIMESTAMPTZ NOT NULL
    );
    CREATE INDEX sign_in_failures_email ON sign_in_failures(email, created_at);
    CREATE INDEX sign_in_failures_ip ON sign_in_failures(ip, created_at);
    CREATE INDEX sign_in_failures_time ON sign_in_failures(created_at);
    """,
    # 4: crash-safe credits, as SQLite's migration 5.
    """
    CREATE TABLE reservations (
        entry_id BIGINT PRIMARY KEY REFERENCES ledger(id),
        owner TEXT NOT NULL,
        deadline DOUBLE PRECISION NOT NULL
    );
    CREATE INDEX reservations_deadline ON reservations(deadline);
    CREATE INDEX reservations_owner ON reservations(owner);
    CREATE TABLE server_instances (
        owner TEXT PRIMARY KEY,
        started_at DOUBLE PRECISION NOT NULL,
        heartbeat_at DOUBLE PRECISION NOT NULL
    );
    """,
)
# How long a call waits for a pooled connection: while the database restarts (or is down) calls
# get 503 `database_unavailable` after this, rather than hanging on the gateway's timeout.
CONNECTION_WAIT_S = 5.0
MIGRATION_LOCK = 0x636C_6267  # pg_advisory_xact_lock key ("clbg")
IDEMPOTENCY_STORE_LOCK = 0x636C_6269  # the kept answers' total size ("clbi")


class _Db:
    """A connection inside a transaction, taking the `?` placeholders the shared SQL uses."""

    def __init__(self, conn: psycopg.Connection):
        self.conn = conn

    def execute(self, sql: str, params: Sequence[Any] = ()) -> psycopg.Cursor:
        return self.conn.execute(sql.replace("?", "%s"), params)


class PostgresStorage(SqlStorage):
    LOCK_ROW = " FOR UPDATE"
    # Blocks concurrent inserts into accounts (not reads) until the transaction ends.
    LOCK_ACCOUNTS = "LOCK TABLE accounts IN SHARE ROW EXCLUSIVE MODE"
    UNIQUE_VIOLATION = psycopg.errors.UniqueViolation
    LOCK_IDEMPOTENCY_STORE = f"SELECT pg_advisory_xact_lock({IDEMPOTENCY_STORE_LOCK})"
    DAY_SQL = "to_char(l.created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD')"

    def __init__(
        self, url: str, *, min_size: int = 1, max_size: int = 8, timeout_s: float = 30.0,
        connection_wait_s: float = CONNECTION_WAIT_S,
    ):
        self.url = url
        # One plain connection first: a wrong URL or a server that is down fails here at once
        # with libpq's own message (a pool would retry until its timeout).
        with psycopg.connect(url, connect_timeout=max(1, int(timeout_s))) as conn:
            self._migrate(_Db(conn))
        # check: each connection is tried (one round trip) before it is lent, so after a
        # database restart the pool replaces the dead ones instead of failing a call with each.
        self.pool = ConnectionPool(
            url, min_size=min_size, max_size=max_size, timeout=connection_wait_s, open=False, name="clearbg",
            check=ConnectionPool.check_connection,
        )
        self.pool.open(wait=True, timeout=timeout_s)

    @contextmanager
    def _write(self) -> Iterator[_Db]:
        # The pool's context commits on success and rolls back on any exception. Losing the
        # server (restart, network, no connection in time: OperationalError and its PoolTimeout)
        # is the caller's 503; errors of the statements themselves (constraints) stay as they are.
        try:
            with self.pool.connection() as conn:
                yield _Db(conn)
        except (psycopg.OperationalError, psycopg.InterfaceError) as exc:
            raise StorageUnavailable(f"PostgreSQL unavailable: {type(exc).__name__}") from exc

    _read = _write

    @staticmethod
    def _migrate(db: _Db) -> None:
        """In the connection's transaction (committed when its block ends)."""
        db.execute("SELECT pg_advisory_xact_lock(?)", (MIGRATION_LOCK,))
        db.execute("CREATE TABLE IF NOT EXISTS clearbg_schema (version INTEGER NOT NULL)")
        row = db.execute("SELECT version FROM clearbg_schema").fetchone()
        if row is None:
            db.execute("INSERT INTO clearbg_schema (version) VALUES (0)")
        version = row[0] if row else 0
        for number, script in enumerate(MIGRATIONS[version:], start=version + 1):
            db.conn.execute(script)
            db.execute("UPDATE clearbg_schema SET version = ?", (number,))

    def close(self) -> None:
        self.pool.close()

    # -- representation ------------------------------------------------------------------

    def _to_db(self, amount: Decimal) -> Decimal:
        return Decimal(amount).quantize(SCALE, rounding=ROUND_HALF_EVEN)

    def _from_db(self, value: Decimal) -> Decimal:
        # Drop NUMERIC's trailing zeros ('1.500000' -> '1.5') so both backends give equal-looking values.
        return Decimal(int(value * MICROS)) / MICROS

    def _time_to_db(self, when: dt.datetime) -> dt.datetime:
        return when

    def _time_from_db(self, value: dt.datetime) -> str:
        return value.astimezone(dt.timezone.utc).isoformat(timespec="milliseconds")

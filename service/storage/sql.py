"""The accounts, keys and ledger logic, written once in the SQL both backends share.

A backend (sqlite.py, postgres.py) supplies connections and transactions, how amounts are
stored (`_to_db` / `_from_db`), how a write transaction locks an account row (`LOCK_ROW`),
and which exception a unique index raises. Statements use `?` placeholders; the PostgreSQL
backend translates them.

Every change reads the account row under a lock (SQLite: the database write lock taken by
BEGIN IMMEDIATE; PostgreSQL: SELECT ... FOR UPDATE), decides, updates it and appends its
ledger row in the same transaction, so two servers racing for the last credit cannot both
get it, and a balance never moves without its ledger row.
"""

from __future__ import annotations

import datetime as dt
from abc import ABC, abstractmethod
from collections.abc import Sequence
from contextlib import AbstractContextManager
from decimal import Decimal
from typing import Any, Protocol

from service.storage.base import (
    DISPLAY_PREFIX_LENGTH,
    Account,
    ApiKey,
    Call,
    Hold,
    InsufficientCredits,
    InsufficientFreeCalls,
    KeyExists,
    LedgerEntry,
    Reservation,
    SignInFailures,
    SweptReservation,
    UnknownAccount,
    UsageDay,
    User,
    UserExists,
    current_period,
    hash_key,
    split_debit,
)
from service.storage.idempotency_sql import IdempotencySql

ACCOUNT_COLUMNS = (
    "id, name, subscription, payg, enterprise, free_calls_allowance, free_calls_used, "
    "free_calls_period, rate_limit_per_minute"
)
KEY_COLUMNS = "id, account_id, prefix, created_at, revoked_at, name, last_used_at"
USER_COLUMNS = "id, account_id, email, password_hash, created_at"
LEDGER_COLUMNS = (
    "id, account_id, key_id, request_id, amount, kind, subscription_after, payg_after, enterprise_after, "
    "free_calls_used_after, created_at, subscription_change, payg_change, enterprise_change, "
    "free_calls_change, reverses"
)
REFUNDABLE = ("charge", "free_call")
# Far above any real balance, and within what both backends hold exactly (SQLite's 64-bit
# micro-credits, PostgreSQL's NUMERIC(20, 6)).
MAX_BALANCE = Decimal(10) ** 12


class Db(Protocol):
    """What the shared logic needs of a connection inside a transaction."""

    def execute(self, sql: str, params: Sequence[Any] = ...) -> Any: ...


def utc_now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


class SqlStorage(IdempotencySql, ABC):
    # Appended to the SELECT that reads an account before changing it.
    LOCK_ROW = ""
    # Run first in a transaction that must see no account appear meanwhile (None: the write
    # transaction already excludes every other writer).
    LOCK_ACCOUNTS: str | None = None
    # The driver's exception for a duplicate in a unique index.
    UNIQUE_VIOLATION: type[Exception] = Exception
    # A ledger row's UTC day as YYYY-MM-DD, in the backend's SQL.
    DAY_SQL = ""

    @abstractmethod
    def _write(self) -> AbstractContextManager[Db]:
        """A transaction that commits on success and rolls back on any exception."""

    @abstractmethod
    def _read(self) -> AbstractContextManager[Db]:
        """A connection for reads that need no lock."""

    @abstractmethod
    def _to_db(self, amount: Decimal) -> Any:
        """Credits as stored; exact, and rounded the same way on both backends."""

    @abstractmethod
    def _from_db(self, value: Any) -> Decimal: ...

    @abstractmethod
    def _time_to_db(self, when: dt.datetime) -> Any: ...

    @abstractmethod
    def _time_from_db(self, value: Any) -> str:
        """ISO 8601 in UTC."""

    @abstractmethod
    def close(self) -> None: ...

    # -- rows ----------------------------------------------------------------------------

    def _account(self, row: Sequence[Any]) -> Account:
        return Account(
            id=row[0],
            name=row[1],
            subscription=self._from_db(row[2]),
            payg=self._from_db(row[3]),
            enterprise=self._from_db(row[4]),
            free_calls_allowance=row[5],
            free_calls_used=row[6],
            free_calls_period=row[7],
            rate_limit_per_minute=row[8],
        )

    def _key(self, row: Sequence[Any]) -> ApiKey:
        revoked = self._time_from_db(row[4]) if row[4] is not None else None
        used = self._time_from_db(row[6]) if row[6] is not None else None
        return ApiKey(row[0], row[1], row[2], self._time_from_db(row[3]), revoked, row[5], used)

    def _user(self, row: Sequence[Any]) -> User:
        return User(row[0], row[1], row[2], row[3], self._time_from_db(row[4]))

    def _entry(self, r: Sequence[Any]) -> LedgerEntry:
        return LedgerEntry(
            id=r[0],
            account_id=r[1],
            key_id=r[2],
            request_id=r[3],
            amount=self._from_db(r[4]),
            kind=r[5],
            subscription_after=self._from_db(r[6]),
            payg_after=self._from_db(r[7]),
            enterprise_after=self._from_db(r[8]),
            free_calls_used_after=r[9],
            created_at=self._time_from_db(r[10]),
            subscription_change=self._from_db(r[11]),
            payg_change=self._from_db(r[12]),
            enterprise_change=self._from_db(r[13]),
            free_calls_change=r[14],
            reverses=r[15],
        )

    def _locked_account(self, db: Db, account_id: int) -> tuple[Any, ...]:
        row = db.execute(f"SELECT {ACCOUNT_COLUMNS} FROM accounts WHERE id = ?{self.LOCK_ROW}", (account_id,)).fetchone()
        if row is None:
            raise UnknownAccount(f"no account {account_id}")
        return tuple(row)

    def _select_account(self, db: Db, account_id: int) -> Account:
        row = db.execute(f"SELECT {ACCOUNT_COLUMNS} FROM accounts WHERE id = ?", (account_id,)).fetchone()
        if row is None:
            raise UnknownAccount(f"no account {account_id}")
        return self._account(row)

    def _apply(
        self,
        db: Db,
        row: tuple[Any, ...],
        *,
        kind: str,
        key_id: int | None,
        request_id: str,
        amount: Any,
        changes: Sequence[Any],
        free_calls_used: int,
        free_calls_change: int = 0,
        period: str | None = None,
        reverses: int | None = None,
        size: str | None = None,
    ) -> tuple[int, Account]:
        """Writes the account's new balances and the ledger row that explains them (and, for
        a call, when its key was last used)."""
        account_id = row[0]
        after = tuple(balance + change for balance, change in zip(row[2:5], changes))
        if min(after) < 0:
            raise ValueError("a balance cannot go below zero")
        if max(after) >= self._to_db(MAX_BALANCE):
            raise ValueError(f"a balance must stay below {MAX_BALANCE} credits")
        db.execute(
            "UPDATE accounts SET subscription = ?, payg = ?, enterprise = ?, free_calls_used = ?, "
            "free_calls_period = ? WHERE id = ?",
            (*after, free_calls_used, period or row[7], account_id),
        )
        now = self._time_to_db(utc_now())
        entry_id = db.execute(
            "INSERT INTO ledger (account_id, key_id, request_id, amount, kind, subscription_change, payg_change, "
            "enterprise_change, free_calls_change, subscription_after, payg_after, enterprise_after, "
            "free_calls_used_after, reverses, size, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
            "RETURNING id",
            (
                account_id, key_id, request_id, amount, kind, *changes, free_calls_change, *after,
                free_calls_used, reverses, size, now,
            ),
        ).fetchone()[0]
        if key_id is not None and kind in REFUNDABLE:
            db.execute("UPDATE api_keys SET last_used_at = ? WHERE id = ?", (now, key_id))
        return entry_id, self._select_account(db, account_id)

    # -- accounts --------------------------------------------------------------------------

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
        with self._write() as db:
            return self._insert_account(db, name, subscription, payg, enterprise, free_calls, rate_limit_per_minute)

    def create_first_account(
        self, name: str, key: str, user: tuple[str, str] | None = None, **settings: Any
    ) -> Account | None:
        """On an empty database only: creates the account with `key` (and the dashboard user
        `user`: e-mail, password hash) and returns it; None if any account exists. Atomic, so
        servers starting together create one."""
        with self._write() as db:
            if self.LOCK_ACCOUNTS:
                db.execute(self.LOCK_ACCOUNTS)
            if db.execute("SELECT count(*) FROM accounts").fetchone()[0]:
                return None
            account = self._insert_account(db, name, **settings)
            self._insert_key(db, account.id, key)
            if user is not None:
                db.execute(
                    "INSERT INTO users (account_id, email, password_hash, created_at) VALUES (?, ?, ?, ?)",
                    (account.id, *user, self._time_to_db(utc_now())),
                )
            return account

    def _insert_account(
        self,
        db: Db,
        name: str,
        subscription: Decimal = Decimal(0),
        payg: Decimal = Decimal(0),
        enterprise: Decimal = Decimal(0),
        free_calls: int = 0,
        rate_limit_per_minute: int = 500,
    ) -> Account:
        if min(subscription, payg, enterprise) < 0 or free_calls < 0 or rate_limit_per_minute < 1:
            raise ValueError("balances and free calls must be >= 0, the rate limit >= 1")
        if max(subscription, payg, enterprise) >= MAX_BALANCE:
            raise ValueError(f"a balance must stay below {MAX_BALANCE} credits")
        account_id = db.execute(
            "INSERT INTO accounts (name, subscription, payg, enterprise, free_calls_allowance, free_calls_used, "
            "free_calls_period, rate_limit_per_minute, created_at) VALUES (?, ?, ?, ?, ?, 0, ?, ?, ?) RETURNING id",
            (
                name,
                self._to_db(subscription),
                self._to_db(payg),
                self._to_db(enterprise),
                free_calls,
                current_period(),
                rate_limit_per_minute,
                self._time_to_db(utc_now()),
            ),
        ).fetchone()[0]
        return self._select_account(db, account_id)

    def get_account(self, account_id: int) -> Account | None:
        with self._read() as db:
            row = db.execute(f"SELECT {ACCOUNT_COLUMNS} FROM accounts WHERE id = ?", (account_id,)).fetchone()
            return self._account(row) if row else None

    def list_accounts(self) -> list[Account]:
        with self._read() as db:
            return [self._account(r) for r in db.execute(f"SELECT {ACCOUNT_COLUMNS} FROM accounts ORDER BY id").fetchall()]

    def update_account(
        self,
        account_id: int,
        *,
        name: str | None = None,
        free_calls: int | None = None,
        rate_limit_per_minute: int | None = None,
    ) -> Account:
        if (free_calls is not None and free_calls < 0) or (rate_limit_per_minute is not None and rate_limit_per_minute < 1):
            raise ValueError("free calls must be >= 0, the rate limit >= 1")
        with self._write() as db:
            row = self._locked_account(db, account_id)
            db.execute(
                "UPDATE accounts SET name = ?, free_calls_allowance = ?, rate_limit_per_minute = ? WHERE id = ?",
                (
                    row[1] if name is None else name,
                    row[5] if free_calls is None else free_calls,
                    row[8] if rate_limit_per_minute is None else rate_limit_per_minute,
                    account_id,
                ),
            )
            return self._select_account(db, account_id)

    def count_accounts(self) -> int:
        with self._read() as db:
            return db.execute("SELECT count(*) FROM accounts").fetchone()[0]

    def first_account(self) -> Account | None:
        with self._read() as db:
            row = db.execute(f"SELECT {ACCOUNT_COLUMNS} FROM accounts ORDER BY id LIMIT 1").fetchone()
            return self._account(row) if row else None

    # -- keys --------------------------------------------------------------------------------

    def add_api_key(self, account_id: int, key: str, name: str = "") -> ApiKey:
        with self._write() as db:
            self._select_account(db, account_id)
            return self._insert_key(db, account_id, key, name)

    def _insert_key(self, db: Db, account_id: int, key: str, name: str = "") -> ApiKey:
        try:
            row = db.execute(
                f"INSERT INTO api_keys (account_id, key_hash, prefix, created_at, name) VALUES (?, ?, ?, ?, ?) "
                f"RETURNING {KEY_COLUMNS}",
                (account_id, hash_key(key), key[:DISPLAY_PREFIX_LENGTH], self._time_to_db(utc_now()), name),
            ).fetchone()
        except self.UNIQUE_VIOLATION:
            raise KeyExists("this API key is already registered") from None
        return self._key(row)

    def find_key(self, key: str) -> tuple[Account, ApiKey] | None:
        # The look-up is by the key's SHA-256 through a unique index: its time does not
        # depend on how much of a guessed key matches a real one.
        prefixed = ", ".join(f"a.{c.strip()}" for c in ACCOUNT_COLUMNS.split(","))
        keyed = ", ".join(f"k.{c.strip()}" for c in KEY_COLUMNS.split(","))
        with self._read() as db:
            row = db.execute(
                f"SELECT {keyed}, {prefixed} FROM api_keys k JOIN accounts a ON a.id = k.account_id "
                "WHERE k.key_hash = ? AND k.revoked_at IS NULL",
                (hash_key(key),),
            ).fetchone()
        if row is None:
            return None
        split = len(KEY_COLUMNS.split(","))
        return self._account(row[split:]), self._key(row[:split])

    def list_keys(self, account_id: int) -> list[ApiKey]:
        with self._read() as db:
            rows = db.execute(f"SELECT {KEY_COLUMNS} FROM api_keys WHERE account_id = ? ORDER BY id", (account_id,))
            return [self._key(r) for r in rows.fetchall()]

    def revoke_key(self, key_id: int, account_id: int | None = None) -> bool:
        owner = "" if account_id is None else " AND account_id = ?"
        with self._write() as db:
            cursor = db.execute(
                f"UPDATE api_keys SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL{owner}",
                (self._time_to_db(utc_now()), key_id, *(() if account_id is None else (account_id,))),
            )
            return cursor.rowcount == 1

    def get_key(self, key_id: int, account_id: int) -> ApiKey | None:
        with self._read() as db:
            row = db.execute(
                f"SELECT {KEY_COLUMNS} FROM api_keys WHERE id = ? AND account_id = ?", (key_id, account_id)
            ).fetchone()
            return self._key(row) if row else None

    # -- money -------------------------------------------------------------------------------

    def add_credits(
        self,
        account_id: int,
        request_id: str,
        *,
        subscription: Decimal = Decimal(0),
        payg: Decimal = Decimal(0),
        enterprise: Decimal = Decimal(0),
    ) -> Account:
        changes = tuple(self._to_db(Decimal(x)) for x in (subscription, payg, enterprise))
        if not any(changes):
            raise ValueError("nothing to add")
        with self._write() as db:
            row = self._locked_account(db, account_id)
            _, account = self._apply(
                db, row, kind="credit", key_id=None, request_id=request_id, amount=sum(changes),
                changes=changes, free_calls_used=row[6],
            )
            return account

    def reserve(
        self, account_id: int, key_id: int | None, request_id: str, amount: Decimal, *, or_free_call: bool = False,
        size: str = "", hold: Hold | None = None,
    ) -> Reservation:
        wanted = self._to_db(Decimal(amount))
        if wanted <= 0:
            raise ValueError("a charge must be positive")
        with self._write() as db:
            row = self._locked_account(db, account_id)
            balances = row[2:5]
            if sum(balances) >= wanted:
                taken = split_debit(balances, wanted)
                entry_id, after = self._apply(
                    db, row, kind="charge", key_id=key_id, request_id=request_id, amount=wanted,
                    changes=tuple(-t for t in taken), free_calls_used=row[6], size=size,
                )
                self._hold(db, entry_id, hold)
                return Reservation(entry_id, after, self._from_db(wanted), free_call=False)
            if not or_free_call:
                raise InsufficientCredits(self._account(row), Decimal(amount))
            return self._take_free_call(db, row, key_id, request_id, hold)

    def reserve_free_call(
        self, account_id: int, key_id: int | None, request_id: str, *, hold: Hold | None = None
    ) -> Reservation:
        with self._write() as db:
            return self._take_free_call(db, self._locked_account(db, account_id), key_id, request_id, hold)

    def _take_free_call(
        self, db: Db, row: tuple[Any, ...], key_id: int | None, request_id: str, hold: Hold | None
    ) -> Reservation:
        period = current_period()
        account = self._account(row)
        if account.free_calls_left(period) <= 0:
            raise InsufficientFreeCalls(account)
        used = (account.free_calls_used if account.free_calls_period == period else 0) + 1
        zero = self._to_db(Decimal(0))
        entry_id, after = self._apply(
            db, row, kind="free_call", key_id=key_id, request_id=request_id, amount=zero,
            changes=(zero, zero, zero), free_calls_used=used, free_calls_change=1, period=period, size="preview",
        )
        self._hold(db, entry_id, hold)
        return Reservation(entry_id, after, Decimal(0), free_call=True)

    @staticmethod
    def _hold(db: Db, entry_id: int, hold: Hold | None) -> None:
        if hold is not None:
            db.execute(
                "INSERT INTO reservations (entry_id, owner, deadline) VALUES (?, ?, ?)", (entry_id, hold.owner, hold.deadline)
            )

    def refund(self, entry_id: int, request_id: str) -> Account:
        with self._write() as db:
            # The hold goes first: the order every transaction touching a reservation follows
            # (its row, then the account's), so a refund and a sweep cannot deadlock.
            db.execute("DELETE FROM reservations WHERE entry_id = ?", (entry_id,))
            return self._refund_in(db, entry_id, request_id)

    def _refund_in(self, db: Db, entry_id: int, request_id: str) -> Account:
        entry = db.execute(f"SELECT {LEDGER_COLUMNS} FROM ledger WHERE id = ?", (entry_id,)).fetchone()
        if entry is None or entry[5] not in REFUNDABLE:
            raise ValueError(f"ledger entry {entry_id} is not a charge or free call")
        charge = self._entry(entry)
        row = self._locked_account(db, charge.account_id)
        if db.execute("SELECT id FROM ledger WHERE reverses = ?", (entry_id,)).fetchone() is not None:
            return self._account(row)  # already given back
        back = tuple(-self._to_db(c) for c in (charge.subscription_change, charge.payg_change, charge.enterprise_change))
        used, free_back = row[6], 0
        # A free call is given back only within its month (a new month has reset the count).
        if charge.free_calls_change and row[7] == charge.created_at[:7] and used > 0:
            used, free_back = used - 1, -1
        _, account = self._apply(
            db, row, kind="refund", key_id=entry[2], request_id=request_id, amount=sum(back),
            changes=back, free_calls_used=used, free_calls_change=free_back, reverses=entry_id,
        )
        return account

    # -- reservations: settling, heartbeats and the sweep ----------------------------------------

    def settle(self, entry_id: int) -> bool:
        with self._write() as db:
            return db.execute("DELETE FROM reservations WHERE entry_id = ?", (entry_id,)).rowcount == 1

    def heartbeat(self, owner: str, now: float) -> None:
        with self._write() as db:
            db.execute(
                "INSERT INTO server_instances (owner, started_at, heartbeat_at) VALUES (?, ?, ?) "
                "ON CONFLICT (owner) DO UPDATE SET heartbeat_at = excluded.heartbeat_at",
                (owner, now, now),
            )

    def retire(self, owner: str) -> None:
        with self._write() as db:
            db.execute("DELETE FROM server_instances WHERE owner = ?", (owner,))

    def sweep_reservations(self, now: float, stale_before: float | None, limit: int = 100) -> list[SweptReservation]:
        # The owner test only with a liveness bound: a sweeper that has not been connected long
        # enough to judge others' heartbeats (service/reservations.py) passes None.
        due, due_params = "deadline < ?", [now]
        if stale_before is not None:
            due += (
                " OR NOT EXISTS (SELECT 1 FROM server_instances s WHERE s.owner = reservations.owner "
                "AND s.heartbeat_at >= ?)"
            )
            due_params.append(stale_before)
        with self._read() as db:
            candidates = db.execute(
                f"SELECT entry_id FROM reservations WHERE {due} ORDER BY entry_id LIMIT ?", (*due_params, limit)
            ).fetchall()
        swept = []
        for (entry_id,) in candidates:
            with self._write() as db:
                # Decided again on the row itself: whoever deletes it (this sweep, another, or
                # the owner settling or refunding) is the only one to act on it.
                taken = db.execute(
                    f"DELETE FROM reservations WHERE entry_id = ? AND ({due}) RETURNING owner, deadline",
                    (entry_id, *due_params),
                ).fetchone()
                if taken is None:
                    continue
                request_id, amount, kind = db.execute(
                    "SELECT request_id, amount, kind FROM ledger WHERE id = ?", (entry_id,)
                ).fetchone()
                account = self._refund_in(db, entry_id, request_id)
                swept.append(SweptReservation(
                    entry_id, account.id, taken[0], "expired" if taken[1] < now else "owner_gone",
                    self._from_db(amount), kind == "free_call",
                ))
        return swept

    def unsettled_reservations(self, account_id: int | None = None) -> int:
        with self._read() as db:
            if account_id is None:
                return db.execute("SELECT count(*) FROM reservations").fetchone()[0]
            return db.execute(
                "SELECT count(*) FROM reservations r JOIN ledger l ON l.id = r.entry_id WHERE l.account_id = ?",
                (account_id,),
            ).fetchone()[0]

    def ledger(self, account_id: int, limit: int | None = None) -> list[LedgerEntry]:
        with self._read() as db:
            if limit is None:
                rows = db.execute(f"SELECT {LEDGER_COLUMNS} FROM ledger WHERE account_id = ? ORDER BY id", (account_id,))
            else:
                rows = db.execute(
                    f"SELECT {LEDGER_COLUMNS} FROM ledger WHERE account_id = ? ORDER BY id DESC LIMIT ?",
                    (account_id, limit),
                )
            entries = [self._entry(r) for r in rows.fetchall()]
        return entries if limit is None else entries[::-1]

    # -- dashboard users and sessions ------------------------------------------------------------

    def create_user(
        self, email: str, password_hash: str | None, *, account_id: int | None = None,
        account_name: str | None = None, free_calls: int = 0,
    ) -> User:
        with self._write() as db:
            if account_id is None:
                account_id = self._insert_account(db, account_name or email, free_calls=free_calls).id
            else:
                self._select_account(db, account_id)
            try:
                row = db.execute(
                    f"INSERT INTO users (account_id, email, password_hash, created_at) VALUES (?, ?, ?, ?) "
                    f"RETURNING {USER_COLUMNS}",
                    (account_id, email, password_hash, self._time_to_db(utc_now())),
                ).fetchone()
            except self.UNIQUE_VIOLATION:
                raise UserExists("a user with this e-mail address exists already") from None
            return self._user(row)

    def find_user(self, email: str) -> User | None:
        with self._read() as db:
            row = db.execute(f"SELECT {USER_COLUMNS} FROM users WHERE email = ?", (email,)).fetchone()
            return self._user(row) if row else None

    def count_users(self) -> int:
        with self._read() as db:
            return db.execute("SELECT count(*) FROM users").fetchone()[0]

    def set_password(self, user_id: int, password_hash: str) -> None:
        with self._write() as db:
            db.execute("UPDATE users SET password_hash = ? WHERE id = ?", (password_hash, user_id))
            db.execute("DELETE FROM web_sessions WHERE user_id = ?", (user_id,))

    def create_session(self, user_id: int, token: str, expires_at: dt.datetime) -> None:
        now = utc_now()
        with self._write() as db:
            # A user's expired sessions go as a new one comes: the table stays small.
            db.execute("DELETE FROM web_sessions WHERE user_id = ? AND expires_at <= ?", (user_id, self._time_to_db(now)))
            db.execute(
                "INSERT INTO web_sessions (token_hash, user_id, created_at, expires_at) VALUES (?, ?, ?, ?)",
                (hash_key(token), user_id, self._time_to_db(now), self._time_to_db(expires_at)),
            )

    def find_session(self, token: str) -> User | None:
        columns = ", ".join(f"u.{c.strip()}" for c in USER_COLUMNS.split(","))
        with self._read() as db:
            row = db.execute(
                f"SELECT {columns} FROM web_sessions s JOIN users u ON u.id = s.user_id "
                "WHERE s.token_hash = ? AND s.expires_at > ?",
                (hash_key(token), self._time_to_db(utc_now())),
            ).fetchone()
            return self._user(row) if row else None

    def end_session(self, token: str) -> None:
        with self._write() as db:
            db.execute("DELETE FROM web_sessions WHERE token_hash = ?", (hash_key(token),))

    def create_sign_in_link(self, user_id: int, token: str, expires_at: dt.datetime) -> None:
        with self._write() as db:
            db.execute(
                "INSERT INTO sign_in_links (token_hash, user_id, created_at, expires_at) VALUES (?, ?, ?, ?)",
                (hash_key(token), user_id, self._time_to_db(utc_now()), self._time_to_db(expires_at)),
            )

    def redeem_sign_in_link(self, token: str) -> User | None:
        now = self._time_to_db(utc_now())
        with self._write() as db:
            used = db.execute(
                "UPDATE sign_in_links SET used_at = ? WHERE token_hash = ? AND used_at IS NULL AND expires_at > ? "
                "RETURNING user_id",
                (now, hash_key(token), now),
            ).fetchone()
            if used is None:
                return None
            row = db.execute(f"SELECT {USER_COLUMNS} FROM users WHERE id = ?", (used[0],)).fetchone()
            return self._user(row)

    def record_sign_in_failure(self, email: str, ip: str) -> None:
        now = utc_now()
        with self._write() as db:
            # Failures older than a day count for nothing any more.
            db.execute("DELETE FROM sign_in_failures WHERE created_at < ?", (self._time_to_db(now - dt.timedelta(days=1)),))
            db.execute(
                "INSERT INTO sign_in_failures (email, ip, created_at) VALUES (?, ?, ?)",
                (email, ip, self._time_to_db(now)),
            )

    def sign_in_failures(self, email: str, ip: str, since: dt.datetime) -> SignInFailures:
        after = self._time_to_db(since)
        with self._read() as db:
            by_email = db.execute(
                "SELECT count(*), min(created_at) FROM sign_in_failures WHERE email = ? AND created_at > ?", (email, after)
            ).fetchone()
            by_ip = db.execute(
                "SELECT count(*), min(created_at) FROM sign_in_failures WHERE ip = ? AND created_at > ?", (ip, after)
            ).fetchone()
        oldest = lambda value: self._time_from_db(value) if value is not None else None  # noqa: E731
        return SignInFailures(by_email[0], oldest(by_email[1]), by_ip[0], oldest(by_ip[1]))

    def clear_sign_in_failures(self, email: str) -> None:
        with self._write() as db:
            db.execute("DELETE FROM sign_in_failures WHERE email = ?", (email,))

    # -- usage ---------------------------------------------------------------------------------

    def usage_by_day(self, account_id: int, since: dt.datetime) -> list[UsageDay]:
        with self._read() as db:
            rows = db.execute(
                f"SELECT {self.DAY_SQL} AS day, count(*), coalesce(sum(l.amount), 0) FROM ledger l "
                "WHERE l.account_id = ? AND l.created_at >= ? AND l.kind IN ('charge', 'free_call') "
                "AND NOT EXISTS (SELECT 1 FROM ledger r WHERE r.reverses = l.id) GROUP BY day ORDER BY day",
                (account_id, self._time_to_db(since)),
            ).fetchall()
        return [UsageDay(r[0], r[1], self._from_db(r[2])) for r in rows]

    def recent_calls(self, account_id: int, limit: int) -> list[Call]:
        with self._read() as db:
            rows = db.execute(
                "SELECT l.id, l.created_at, l.key_id, k.name, k.prefix, l.size, l.amount, r.id FROM ledger l "
                "LEFT JOIN api_keys k ON k.id = l.key_id LEFT JOIN ledger r ON r.reverses = l.id "
                "WHERE l.account_id = ? AND l.kind IN ('charge', 'free_call') ORDER BY l.id DESC LIMIT ?",
                (account_id, limit),
            ).fetchall()
        return [
            Call(r[0], self._time_from_db(r[1]), r[2], r[3] or "", r[4] or "", r[5] or "", self._from_db(r[6]), r[7] is not None)
            for r in rows
        ]

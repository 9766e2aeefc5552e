"""Idempotency records in the SQL both backends share (mixed into SqlStorage).

One row per (account, Idempotency-Key): the request's fingerprint, whether its call is running
(and until when its server holds it: the lease) or done, and the answer kept for replays.
Every decision is one write transaction on the row, so two servers sharing the database agree
on which call runs: SQLite's write lock serialises them; on PostgreSQL the row is read FOR
UPDATE, and two servers inserting the same new key meet on the primary key (the loser retries
and sees the winner's row). Times are Unix seconds from the servers' clocks.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Any

from service.storage.base import IdempotencyClaim, StoredResponse

ROW_COLUMNS = "fingerprint, state, lease_until, expires_at, content_type, headers, summary, body"
# Evicting the oldest answers this many rows at a time until the new one fits.
EVICT_BATCH = 64


class IdempotencySql:
    LOCK_ROW: str
    # Serialises the stored-size bookkeeping between servers (None: the write transaction
    # already excludes every other writer, as SQLite's does).
    LOCK_IDEMPOTENCY_STORE: str | None = None
    UNIQUE_VIOLATION: type[Exception]
    _write: Callable[[], AbstractContextManager[Any]]  # SqlStorage's write transaction

    def claim_idempotency(
        self, account_id: int, key: str, fingerprint: str, owner: str, *, now: float, ttl_s: float, lease_s: float
    ) -> IdempotencyClaim:
        try:
            return self._claim(account_id, key, fingerprint, owner, now, ttl_s, lease_s)
        except self.UNIQUE_VIOLATION:
            # Another server inserted this key between our read and our insert: its row decides.
            return self._claim(account_id, key, fingerprint, owner, now, ttl_s, lease_s)

    def _claim(
        self, account_id: int, key: str, fingerprint: str, owner: str, now: float, ttl_s: float, lease_s: float
    ) -> IdempotencyClaim:
        with self._write() as db:
            row = db.execute(
                f"SELECT {ROW_COLUMNS} FROM idempotency WHERE account_id = ? AND idempotency_key = ?{self.LOCK_ROW}",
                (account_id, key),
            ).fetchone()
            if row is not None and row[3] <= now:  # past its 24 hours: as if never seen
                db.execute("DELETE FROM idempotency WHERE account_id = ? AND idempotency_key = ?", (account_id, key))
                row = None
            if row is None:
                db.execute(
                    "INSERT INTO idempotency (account_id, idempotency_key, fingerprint, state, owner, expires_at, "
                    "lease_until) VALUES (?, ?, ?, 'running', ?, ?, ?)",
                    (account_id, key, fingerprint, owner, now + ttl_s, now + lease_s),
                )
                return IdempotencyClaim("started")
            stored_fingerprint, state, lease_until = row[0], row[1], row[2]
            if stored_fingerprint != fingerprint:
                return IdempotencyClaim("mismatch")
            if state == "running":
                if lease_until > now:
                    return IdempotencyClaim("in_flight")
                db.execute(
                    "UPDATE idempotency SET owner = ?, lease_until = ? WHERE account_id = ? AND idempotency_key = ?",
                    (owner, now + lease_s, account_id, key),
                )
                return IdempotencyClaim("started")
            body = bytes(row[7]) if row[7] is not None else None
            headers = tuple((str(name), str(value)) for name, value in json.loads(row[5]))
            return IdempotencyClaim("replay", StoredResponse(row[4], headers, row[6], body))

    def complete_idempotency(
        self, account_id: int, key: str, owner: str, response: StoredResponse, *, now: float, max_bytes: int
    ) -> bool:
        body = response.body or b""
        keep = response.body is not None and len(body) <= max_bytes
        with self._write() as db:
            if self.LOCK_IDEMPOTENCY_STORE:
                db.execute(self.LOCK_IDEMPOTENCY_STORE)
            db.execute("DELETE FROM idempotency WHERE expires_at <= ?", (now,))
            if keep:
                self._make_room(db, max_bytes - len(body))
            cursor = db.execute(
                "UPDATE idempotency SET state = ?, completed_at = ?, content_type = ?, headers = ?, summary = ?, "
                "body = ?, body_size = ? WHERE account_id = ? AND idempotency_key = ? AND owner = ? "
                "AND state = 'running'",
                (
                    "done" if keep else "evicted", now, response.content_type,
                    json.dumps([list(pair) for pair in response.headers]), response.summary,
                    body if keep else None, len(body) if keep else 0, account_id, key, owner,
                ),
            )
            return cursor.rowcount == 1

    def _make_room(self, db: Any, budget: int) -> None:
        """Evicts the oldest kept answers until the others take at most `budget` bytes. An
        evicted record still holds its key (a repeat is refused, never charged again)."""
        stored = db.execute("SELECT COALESCE(SUM(body_size), 0) FROM idempotency WHERE state = 'done'").fetchone()[0]
        excess = int(stored) - budget
        while excess > 0:
            rows = db.execute(
                "SELECT account_id, idempotency_key, body_size FROM idempotency WHERE state = 'done' "
                "ORDER BY completed_at LIMIT ?",
                (EVICT_BATCH,),
            ).fetchall()
            if not rows:
                return
            for account_id, key, size in rows:
                db.execute(
                    "UPDATE idempotency SET state = 'evicted', body = NULL, body_size = 0 "
                    "WHERE account_id = ? AND idempotency_key = ?",
                    (account_id, key),
                )
                excess -= int(size)
                if excess <= 0:
                    return

    def release_idempotency(self, account_id: int, key: str, owner: str) -> None:
        with self._write() as db:
            db.execute(
                "DELETE FROM idempotency WHERE account_id = ? AND idempotency_key = ? AND owner = ? "
                "AND state = 'running'",
                (account_id, key, owner),
            )

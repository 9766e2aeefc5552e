"""Crash-safe credits: a reservation no live process will settle is settled anyway.

A paid call's charge (or free call) is a reservation from the moment it is taken until its
result is delivered (`settle`) or it is given back (`refund`). The reservation names its owner,
this server instance (host, process id and a random nonce, so a restarted process is someone
else), and a deadline past which no call of ours can still be running. Every server writes a
heartbeat row for itself and runs a sweeper that refunds the reservations whose deadline passed
or whose owner stopped heartbeating (killed, OOM, a node lost), exactly once whichever server
gets there first (service/storage/sql.py: a conditional delete of the reservation's row).

Owners are judged only by a sweeper that has itself been heartbeating without a break for the
whole staleness window: after a database outage nobody could heartbeat, and the others get that
long to show they are alive before their reservations are touched. A refund this server could
not write (the database was down) is retried by its own sweeper every round; should the server
die first, another's sweeper refunds it as an orphan.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import socket
import threading
import time
from collections.abc import Callable
from decimal import Decimal

from service import metrics
from service.errors import ApiError
from service.logging import get_logger
from service.storage import Hold, Reservation, Storage, StorageUnavailable, SweptReservation

log = get_logger(__name__)


def instance_id() -> str:
    """This process as a reservation owner: host, pid and a nonce (pids are reused)."""
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"


def reservation_lost() -> ApiError:
    """The call outlived its reservation, which a sweep gave back: its result is not delivered
    (it would be a picture nobody paid for)."""
    return ApiError(
        503, "reservation_expired",
        "The call took too long and its credit was given back; nothing was charged. Please try again.",
        headers=[("retry-after", "1")],
    )


class Reservations:
    """This server's side of reservations: the hold its calls take, settling and refunding
    them, its heartbeat, and the sweep (`run`, one task per server)."""

    def __init__(
        self, storage: Storage, *, deadline_s: float, heartbeat_s: float, stale_s: float,
        owner: str | None = None, clock: Callable[[], float] = time.time,
    ):
        if stale_s <= heartbeat_s:
            raise ValueError("an owner must miss more than one heartbeat to count as gone")
        self.storage = storage
        self.owner = owner or instance_id()
        self.deadline_s, self.heartbeat_s, self.stale_s = deadline_s, heartbeat_s, stale_s
        self.clock = clock
        # Refunds that failed (entry id -> request id, credits, free call), retried by the sweep.
        self.pending: dict[int, tuple[str, Decimal, bool]] = {}
        self._beating_since: float | None = None
        self.swept_total = 0
        # A heartbeat still running in its thread when the server stops (cancelling the sweeper
        # does not stop the thread) must not write the row back after retire removed it.
        self._beat_lock = threading.Lock()
        self._retired = False

    def hold(self) -> Hold:
        return Hold(self.owner, self.clock() + self.deadline_s)

    def settle(self, reservation: Reservation, request_id: str) -> None:
        """Blocking. Raises `reservation_lost` (503) if a sweep gave the reservation back, and
        StorageUnavailable if the database could not say (the call fails; the refund is left
        to this server's sweep)."""
        entry_id = reservation.entry_id
        try:
            settled = self.storage.settle(entry_id)
        except StorageUnavailable:
            self.pending[entry_id] = (request_id, reservation.amount, reservation.free_call)
            raise
        if not settled:
            log.warning("reservation_lost", entry_id=entry_id)
            raise reservation_lost()

    def refund(self, reservation: Reservation, request_id: str) -> None:
        """Blocking; never raises: a refund that cannot be written now is retried by the sweep.
        Counted in the metrics once written (a call that also outlived its deadline, swept and
        then failed, would be counted twice: the ledger gives back once)."""
        entry_id = reservation.entry_id
        try:
            self.storage.refund(entry_id, request_id)
        except Exception:  # noqa: BLE001 - the call's own error is the one to report
            log.warning("refund_deferred", entry_id=entry_id, exc_info=True)
            self.pending[entry_id] = (request_id, reservation.amount, reservation.free_call)
        else:
            metrics.record_refund(float(reservation.amount), reservation.free_call)

    def beat(self) -> None:
        """Blocking: the heartbeat, noting since when it has been unbroken."""
        now = self.clock()
        with self._beat_lock:
            if self._retired:
                return
            try:
                self.storage.heartbeat(self.owner, now)
            except Exception:
                self._beating_since = None
                raise
        if self._beating_since is None:
            self._beating_since = now

    def sweep(self) -> list[SweptReservation]:
        """Blocking: retries this server's deferred refunds, then refunds what is due."""
        for entry_id, (request_id, credits, free_call) in list(self.pending.items()):
            self.storage.refund(entry_id, request_id)
            del self.pending[entry_id]
            metrics.record_refund(float(credits), free_call)
            log.info("refund_retried", entry_id=entry_id)
        now = self.clock()
        judging = self._beating_since is not None and now - self._beating_since >= self.stale_s
        swept = self.storage.sweep_reservations(now, now - self.stale_s if judging else None)
        for item in swept:
            log.warning("reservation_swept", entry_id=item.entry_id, account_id=item.account_id,
                        owner=item.owner, reason=item.reason)
            metrics.record_refund(float(item.amount), item.free_call)
        self.swept_total += len(swept)
        return swept

    async def run(self) -> None:
        """Heartbeat and sweep every `heartbeat_s` until cancelled; database errors are logged
        and the next round tries again."""
        while True:
            try:
                await asyncio.to_thread(self.beat)
                await asyncio.to_thread(self.sweep)
            except Exception as exc:  # noqa: BLE001 - an outage must not end the sweeper
                log.warning("sweep_failed", error=type(exc).__name__)
            await asyncio.sleep(self.heartbeat_s)

    def retire(self) -> None:
        """Blocking, on a clean stop: the heartbeat row goes, so whatever this server still
        holds (calls abandoned after the grace) is swept by the others at once."""
        with self._beat_lock:
            self._retired = True
            try:
                self.storage.retire(self.owner)
            except Exception:  # noqa: BLE001 - stopping anyway; the heartbeat goes stale instead
                log.warning("retire_failed", exc_info=True)

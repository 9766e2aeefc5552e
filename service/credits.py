"""Paying for a removal: credits (or a free preview call) are reserved before the engine runs,
given back if the call fails before its result is delivered, and settled when it is (held
meanwhile by this server instance: service/reservations.py).

Reserving first means a call the account cannot pay for is refused at once (402) instead of
after an inference, and two racing calls cannot both be served with one credit left: the
storage decides under the account's row lock, including what size=auto becomes.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from decimal import Decimal

from service import metrics, params
from service.errors import ApiError
from service.reservations import Reservations
from service.storage import Account, InsufficientCredits, InsufficientFreeCalls, Reservation

PRICE = Decimal(1)  # every paid size costs one credit


@dataclass(frozen=True)
class Paid:
    """What a call reserved: the size it runs at and the balances after the reservation."""

    size: str
    reservation: Reservation

    @property
    def charged(self) -> Decimal:
        return self.reservation.amount

    @property
    def remaining(self) -> Decimal:
        return self.reservation.account.total


def format_credits(amount: Decimal) -> str:
    """'1', '0', '44.5': no exponent, no trailing zeros."""
    text = format(amount.normalize(), "f")
    return text if text != "-0" else "0"


def _reserve(
    reservations: Reservations, account_id: int, key_id: int | None, request_id: str, size: str
) -> Paid:
    storage, hold = reservations.storage, reservations.hold()
    try:
        if size == "preview":
            return _recorded(Paid("preview", storage.reserve_free_call(account_id, key_id, request_id, hold=hold)))
        reservation = storage.reserve(
            account_id, key_id, request_id, PRICE, or_free_call=size == "auto",
            size=params.AUTO_SIZE if size == "auto" else size,  # the ledger keeps it (the dashboard's usage)
            hold=hold,
        )
    except InsufficientFreeCalls:
        raise no_free_calls() from None
    except InsufficientCredits as exc:
        raise no_credits(exc.account) from None
    if size == "auto":
        size = params.AUTO_SIZE if reservation.paid else "preview"
    return _recorded(Paid(size, reservation))


def _recorded(paid: Paid) -> Paid:
    metrics.record_charge(float(paid.charged), paid.reservation.free_call)
    return paid


@asynccontextmanager
async def paid_call(
    reservations: Reservations, account_id: int, key_id: int | None, request_id: str, size: str
) -> AsyncIterator[Paid]:
    """Reserves for `size` (preview, auto or a paid size) on entry: ApiError 402 if the account
    cannot pay. If the block raises (or is cancelled: the client went away), the reservation is
    refunded, even if the task is cancelled again meanwhile, and the error goes on. If it ends
    well the reservation is settled; should a sweep have given it back meanwhile (the call
    outlived its deadline), that is a 503 and the result is not delivered. Until one of these,
    the reservation is held by this server instance (service/reservations.py): if the process
    dies, another server's sweeper gives it back."""
    reserving = asyncio.ensure_future(asyncio.to_thread(_reserve, reservations, account_id, key_id, request_id, size))
    try:
        paid = await asyncio.shield(reserving)
    except asyncio.CancelledError:
        # Gone while the database decided: whatever it took goes back once it has decided.
        reserving.add_done_callback(lambda done: _refund_after(done, reservations, request_id))
        raise
    try:
        yield paid
    except BaseException:
        refund = asyncio.ensure_future(asyncio.to_thread(reservations.refund, paid.reservation, request_id))
        try:
            await asyncio.shield(refund)
        except asyncio.CancelledError:
            pass  # the refund goes on in its thread; the original error is what matters
        raise
    await asyncio.to_thread(reservations.settle, paid.reservation, request_id)


def _refund_after(done: asyncio.Future, reservations: Reservations, request_id: str) -> None:
    if not done.cancelled() and done.exception() is None:
        asyncio.ensure_future(asyncio.to_thread(reservations.refund, done.result().reservation, request_id))


def refuse_unpayable(account: Account, size: str) -> None:
    """The 402 `paid_call` would give, raised before the call waits for the engine, where the
    balance read when the caller was authenticated already says it cannot pay: a caller with
    nothing left learns so at once, and takes no place in the queue from callers who can pay.
    The reservation after admission still decides (under the account's lock)."""
    if size != "preview" and account.total >= PRICE:
        return
    if size not in ("preview", "auto"):
        raise no_credits(account)
    if account.free_calls_left() <= 0:  # size=auto falls back to a free preview first
        raise no_free_calls()


def no_credits(account: Account) -> ApiError:
    return ApiError(
        402,
        "insufficient_credits",
        f"This call costs {format_credits(PRICE)} credit and the account has {format_credits(account.total)}; "
        "use size=preview (free) or add credits.",
    )


def no_free_calls() -> ApiError:
    return ApiError(402, "insufficient_free_calls", "No free preview calls are left this month.")

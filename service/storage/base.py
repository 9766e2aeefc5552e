"""The storage interface and its records. Amounts are Decimal here; how a backend stores
them (SQLite: integer micro-credits, PostgreSQL: NUMERIC) is its own business."""

from __future__ import annotations

import datetime as dt
import hashlib
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Literal, Protocol, TypeVar

N = TypeVar("N", int, Decimal)

KEY_PREFIX = "cbg_"
# Shown in listings so a person can tell keys apart without the key itself.
DISPLAY_PREFIX_LENGTH = len(KEY_PREFIX) + 6


def generate_key() -> str:
    return KEY_PREFIX + secrets.token_urlsafe(32)


def hash_key(key: str) -> str:
    """Keys are long random strings, so a fast unsalted hash is enough to keep a stolen
    database from yielding usable keys, and it allows an indexed look-up."""
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def current_period(now: dt.datetime | None = None) -> str:
    """The free-call month, e.g. '2026-11' (UTC)."""
    now = now or dt.datetime.now(dt.timezone.utc)
    return now.strftime("%Y-%m")


@dataclass(frozen=True)
class Account:
    id: int
    name: str
    subscription: Decimal
    payg: Decimal
    enterprise: Decimal
    free_calls_allowance: int  # per month
    free_calls_used: int  # in `free_calls_period`
    free_calls_period: str
    rate_limit_per_minute: int

    @property
    def total(self) -> Decimal:
        return self.subscription + self.payg + self.enterprise

    def free_calls_left(self, period: str | None = None) -> int:
        used = self.free_calls_used if self.free_calls_period == (period or current_period()) else 0
        return max(0, self.free_calls_allowance - used)


@dataclass(frozen=True)
class ApiKey:
    id: int
    account_id: int
    prefix: str
    created_at: str
    revoked_at: str | None
    name: str = ""
    # The last call that reached the ledger (a charge or a free call) with this key.
    last_used_at: str | None = None


@dataclass(frozen=True)
class User:
    """A person who signs in to the dashboard; belongs to one account."""

    id: int
    account_id: int
    email: str  # stored lower-cased
    password_hash: str | None  # None: made by the operator, no password chosen yet
    created_at: str


@dataclass(frozen=True)
class UsageDay:
    day: str  # YYYY-MM-DD, UTC
    images: int
    credits: Decimal


@dataclass(frozen=True)
class Call:
    """A charge or free call from the ledger, with its key and whether it was refunded."""

    entry_id: int
    created_at: str
    key_id: int | None
    key_name: str
    key_prefix: str
    size: str
    amount: Decimal
    refunded: bool


@dataclass(frozen=True)
class SignInFailures:
    """Failed sign-ins since a moment, per e-mail and per client IP, with the oldest of each."""

    by_email: int
    oldest_by_email: str | None
    by_ip: int
    oldest_by_ip: str | None


LedgerKind = Literal["charge", "free_call", "refund", "credit"]


@dataclass(frozen=True)
class LedgerEntry:
    """One change to an account. The signed per-source changes make every row reversible
    exactly: a refund puts back what its charge took, to the same sources."""

    id: int
    account_id: int
    key_id: int | None
    request_id: str
    # Credits charged (charge), given back (refund) or added by an operator (credit, negative
    # when taken away); 0 for a free call and its refund.
    amount: Decimal
    kind: LedgerKind
    subscription_after: Decimal
    payg_after: Decimal
    enterprise_after: Decimal
    free_calls_used_after: int
    created_at: str
    subscription_change: Decimal
    payg_change: Decimal
    enterprise_change: Decimal
    free_calls_change: int
    reverses: int | None  # the charge or free call a refund gives back


@dataclass(frozen=True)
class Hold:
    """What makes a charge provisional (a reservation) until `Storage.settle`: the server
    instance that will settle it (`owner`, as its heartbeat names it) and the time (Unix
    seconds) after which nobody will, so any server's sweeper gives it back."""

    owner: str
    deadline: float


@dataclass(frozen=True)
class SweptReservation:
    """A reservation a sweeper gave back: `expired` (past its deadline) or `owner_gone` (its
    server stopped heartbeating)."""

    entry_id: int
    account_id: int
    owner: str
    reason: Literal["expired", "owner_gone"]
    amount: Decimal  # the credits given back (0 for a free call)
    free_call: bool


@dataclass(frozen=True)
class Reservation:
    """Credits (or a free call) taken before the engine runs. They stay taken when the
    result is delivered (`Storage.settle` under a hold); `Storage.refund` gives them back if
    anything fails first, and a sweeper does if the server holding them dies."""

    entry_id: int
    account: Account  # the balances after the reservation
    amount: Decimal  # credits taken; 0 when a free call was used
    free_call: bool

    @property
    def paid(self) -> bool:
        return not self.free_call


def split_debit(balances: Sequence[N], amount: N) -> tuple[N, ...]:
    """How much of `amount` each source gives, in the documented order (subscription, then
    payg, then enterprise). The caller has checked that the sum of `balances` covers it."""
    taken = []
    left = amount
    for balance in balances:
        part = min(balance, left)
        taken.append(part)
        left -= part
    return tuple(taken)


@dataclass(frozen=True)
class StoredResponse:
    """A delivered answer kept for replays under an Idempotency-Key (service/idempotency.py).
    `summary` is the caller's own JSON text (the typed result's fields); `body` is None once
    the answer was evicted to keep the store within its size."""

    content_type: str
    headers: tuple[tuple[str, str], ...]
    summary: str
    body: bytes | None


ClaimOutcome = Literal["started", "replay", "in_flight", "mismatch"]


@dataclass(frozen=True)
class IdempotencyClaim:
    """What `Storage.claim_idempotency` decided: `started` (this call runs and owns the key),
    `replay` (done before: `response`), `in_flight` (another call runs it now) or `mismatch`
    (the key was used with other parameters)."""

    outcome: ClaimOutcome
    response: StoredResponse | None = None


class KeyExists(ValueError):
    """The key is already registered (possibly revoked); a key is never reused."""


class InsufficientCredits(Exception):
    def __init__(self, account: Account, amount: Decimal):
        super().__init__(f"{amount} credits needed, {account.total} left")
        self.account = account
        self.amount = amount


class InsufficientFreeCalls(Exception):
    def __init__(self, account: Account):
        super().__init__("no free calls left this month")
        self.account = account


class UnknownAccount(LookupError):
    """No account with that id."""


class UserExists(ValueError):
    """A user with that e-mail address exists already."""


class StorageUnavailable(Exception):
    """The database could not be reached or gave up on the transaction (restarting, down, no
    connection free in time): nothing was changed, or the change is settled later by the
    reservation sweep. Callers answer 503 with Retry-After, never 500."""


class Storage(Protocol):
    """All methods are blocking and thread-safe; async callers run them in a thread. Every
    change and its ledger row are one transaction; balances never go below zero."""

    def create_account(
        self,
        name: str,
        *,
        subscription: Decimal = Decimal(0),
        payg: Decimal = Decimal(0),
        enterprise: Decimal = Decimal(0),
        free_calls: int = 0,
        rate_limit_per_minute: int = 500,
    ) -> Account: ...

    def create_first_account(self, name: str, key: str, user: tuple[str, str] | None = None, **settings) -> Account | None:
        """On an empty database only: creates the account (create_account's settings) with
        `key`, and the dashboard user `user` (e-mail, password hash) if given, and returns it;
        None if any account exists. Atomic, so servers starting together on one database
        create one."""
        ...

    def get_account(self, account_id: int) -> Account | None: ...

    def list_accounts(self) -> list[Account]: ...

    def update_account(
        self,
        account_id: int,
        *,
        name: str | None = None,
        free_calls: int | None = None,
        rate_limit_per_minute: int | None = None,
    ) -> Account:
        """Changes the given settings (None: unchanged); UnknownAccount if there is none."""
        ...

    def count_accounts(self) -> int: ...

    def first_account(self) -> Account | None:
        """The oldest account (the development account on a fresh install)."""
        ...

    def add_api_key(self, account_id: int, key: str, name: str = "") -> ApiKey:
        """Stores `key` hashed; the caller shows the clear key once. KeyExists if known,
        UnknownAccount if there is no such account."""
        ...

    def find_key(self, key: str) -> tuple[Account, ApiKey] | None:
        """The account behind a live (not revoked) key, read from the database on every
        call: no cache, so a revoked key fails at once on every server."""
        ...

    def list_keys(self, account_id: int) -> list[ApiKey]: ...

    def revoke_key(self, key_id: int, account_id: int | None = None) -> bool:
        """True if a live key was revoked now; False if unknown, already revoked, or (with
        `account_id`) another account's."""
        ...

    def get_key(self, key_id: int, account_id: int) -> ApiKey | None:
        """The key with that id if it belongs to `account_id`."""
        ...

    def add_credits(
        self,
        account_id: int,
        request_id: str,
        *,
        subscription: Decimal = Decimal(0),
        payg: Decimal = Decimal(0),
        enterprise: Decimal = Decimal(0),
    ) -> Account:
        """An operator's top-up (negative amounts take credits away, never below zero:
        ValueError), written to the ledger as kind `credit`."""
        ...

    def reserve(
        self, account_id: int, key_id: int | None, request_id: str, amount: Decimal, *, or_free_call: bool = False,
        size: str = "", hold: Hold | None = None,
    ) -> Reservation:
        """Takes `amount` (subscription, then payg, then enterprise) and writes a `charge` row
        in one transaction. If the total is short: with `or_free_call`, uses one of this
        month's free calls instead (size=auto falling back to preview, decided under the same
        lock, so two racing calls cannot both pay with one credit left); otherwise raises
        InsufficientCredits and changes nothing. `size` is kept in the row (a free call's is
        always preview); the key's last use is noted. With a `hold` the row is a reservation
        until `settle` (or a refund, or the sweep); without, it is final at once."""
        ...

    def reserve_free_call(
        self, account_id: int, key_id: int | None, request_id: str, *, hold: Hold | None = None
    ) -> Reservation:
        """Counts one preview against this month's allowance (ledger row kind free_call);
        raises InsufficientFreeCalls when none is left. `hold` as for `reserve`."""
        ...

    def settle(self, entry_id: int) -> bool:
        """Makes a held charge or free call final (its result is being delivered). False if it
        was no longer held: refunded meanwhile (by its call, or by a sweep that found it past
        its deadline or its owner gone), so the caller must not deliver."""
        ...

    def heartbeat(self, owner: str, now: float) -> None:
        """Notes that server instance `owner` is alive at `now` (Unix seconds)."""
        ...

    def retire(self, owner: str) -> None:
        """Forgets `owner`'s heartbeat (a clean stop): anything it still holds is swept at once."""
        ...

    def sweep_reservations(self, now: float, stale_before: float | None, limit: int = 100) -> list[SweptReservation]:
        """Refunds (each in its own transaction, with its `refund` ledger row) the reservations
        past their deadline and, unless `stale_before` is None, those whose owner's last
        heartbeat is older than `stale_before` or missing. Each is taken by a conditional
        delete of its reservation row, so with several sweepers, and against `settle`, exactly
        one wins and a reservation is given back at most once."""
        ...

    def unsettled_reservations(self, account_id: int | None = None) -> int:
        """Reservations still held (of one account, or all)."""
        ...

    # -- dashboard users, sessions, sign-in links and failed sign-ins -----------------------
    # Session and link tokens are stored as SHA-256 hashes only, like API keys.

    def create_user(
        self, email: str, password_hash: str | None, *, account_id: int | None = None,
        account_name: str | None = None, free_calls: int = 0,
    ) -> User:
        """A user of `account_id`, or (None) of a new account named `account_name` with no
        credits and `free_calls` previews a month, in one transaction. UserExists if the
        e-mail is taken, UnknownAccount if `account_id` is not an account."""
        ...

    def find_user(self, email: str) -> User | None: ...

    def count_users(self) -> int: ...

    def set_password(self, user_id: int, password_hash: str) -> None:
        """Changes the password and ends every session of the user, in one transaction."""
        ...

    def create_session(self, user_id: int, token: str, expires_at: dt.datetime) -> None: ...

    def find_session(self, token: str) -> User | None:
        """The user of a session that has not ended nor expired."""
        ...

    def end_session(self, token: str) -> None: ...

    def create_sign_in_link(self, user_id: int, token: str, expires_at: dt.datetime) -> None: ...

    def redeem_sign_in_link(self, token: str) -> User | None:
        """The link's user, once: a used or expired link gives None."""
        ...

    def record_sign_in_failure(self, email: str, ip: str) -> None: ...

    def sign_in_failures(self, email: str, ip: str, since: dt.datetime) -> SignInFailures: ...

    def clear_sign_in_failures(self, email: str) -> None: ...

    # -- usage, from the ledger ----------------------------------------------------------------

    def usage_by_day(self, account_id: int, since: dt.datetime) -> list[UsageDay]:
        """Calls delivered (charges and free calls not refunded) and credits they cost, per
        UTC day from `since` on; days without calls are left out."""
        ...

    def recent_calls(self, account_id: int, limit: int) -> list[Call]:
        """The newest `limit` charges and free calls, newest first."""
        ...

    def refund(self, entry_id: int, request_id: str) -> Account:
        """Gives back what the charge or free call `entry_id` took, to the same sources, with
        a `refund` row, and ends its hold; at most once per entry (a second call changes
        nothing)."""
        ...

    def ledger(self, account_id: int, limit: int | None = None) -> list[LedgerEntry]:
        """Oldest first; with `limit`, the newest `limit` rows."""
        ...

    def claim_idempotency(
        self, account_id: int, key: str, fingerprint: str, owner: str, *, now: float, ttl_s: float, lease_s: float
    ) -> IdempotencyClaim:
        """One atomic decision for a call carrying an Idempotency-Key (times in Unix seconds):
        no live record -> one is made, running, owned by `owner` until `now + lease_s` and kept
        until `now + ttl_s` (`started`); another fingerprint -> `mismatch`; running and within
        its lease -> `in_flight`; running past its lease (its server died) -> taken over
        (`started`); done -> `replay`. Servers racing on one key: exactly one gets `started`."""
        ...

    def complete_idempotency(
        self, account_id: int, key: str, owner: str, response: StoredResponse, *, now: float, max_bytes: int
    ) -> bool:
        """Keeps `response` for replays if `owner` still holds the key; the stored bodies stay
        within `max_bytes` in total (the oldest evicted first; a body over it is not kept).
        Expired records are deleted. False if the key was no longer `owner`'s."""
        ...

    def release_idempotency(self, account_id: int, key: str, owner: str) -> None:
        """Forgets a running record `owner` holds (its call failed: a retry runs anew)."""
        ...

    def close(self) -> None: ...

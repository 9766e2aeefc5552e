"""The storage interface and its records. Amounts are Decimal here; how a backend stores
them (SQLite: integer micro-credits) is its own business."""

from __future__ import annotations

import datetime as dt
import hashlib
import secrets
from dataclasses import dataclass
from decimal import Decimal
from typing import Literal, Protocol

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


@dataclass(frozen=True)
class LedgerEntry:
    id: int
    account_id: int
    key_id: int | None
    request_id: str
    amount: Decimal
    kind: Literal["charge", "refund", "free_call"]
    subscription_after: Decimal
    payg_after: Decimal
    enterprise_after: Decimal
    free_calls_used_after: int
    created_at: str


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


class Storage(Protocol):
    """All methods are blocking and thread-safe; async callers run them in a thread."""

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

    def get_account(self, account_id: int) -> Account | None: ...

    def count_accounts(self) -> int: ...

    def first_account(self) -> Account | None:
        """The oldest account (the development account on a fresh install)."""
        ...

    def add_api_key(self, account_id: int, key: str) -> ApiKey:
        """Stores `key` hashed; the caller shows the clear key once. KeyExists if known."""
        ...

    def find_key(self, key: str) -> tuple[Account, ApiKey] | None:
        """The account behind a live (not revoked) key."""
        ...

    def revoke_key(self, key_id: int) -> None: ...

    def charge(self, account_id: int, key_id: int | None, request_id: str, amount: Decimal) -> Account:
        """Takes `amount` (subscription, then payg, then enterprise) and writes the ledger
        row in one transaction; raises InsufficientCredits and changes nothing if the total
        is short. Returns the balances after."""
        ...

    def use_free_call(self, account_id: int, key_id: int | None, request_id: str) -> Account:
        """Counts one preview against this month's allowance (ledger row kind free_call);
        raises InsufficientFreeCalls when none is left."""
        ...

    def ledger(self, account_id: int) -> list[LedgerEntry]: ...

    def close(self) -> None: ...

"""What an operator can do to accounts, keys and credits, shared by the CLI and the gRPC
AdminService so both validate and record things the same way.

Errors are ValueError (bad input: the caller can fix it) and UnknownAccount (no such account).
"""

from __future__ import annotations

import uuid
from decimal import Decimal, InvalidOperation

from service.credits import format_credits
from service.storage import Account, ApiKey, LedgerEntry, Storage
from service.storage.base import generate_key

MAX_DECIMALS = 6  # what both backends store exactly (micro-credits)
MAX_CREDITS = Decimal(10) ** 12


def parse_credits(text: str | Decimal | int | None, name: str) -> Decimal:
    """A credit amount as an operator writes it ("12.5", "-3", "" = 0); refuses anything the
    database would round or could not hold, rather than storing a different number."""
    if text is None or (isinstance(text, str) and not text.strip()):
        return Decimal(0)
    try:
        value = Decimal(str(text).strip())
    except InvalidOperation:
        raise ValueError(f"{name} must be a number such as 12.5, got {str(text)[:40]!r}") from None
    if not value.is_finite():
        raise ValueError(f"{name} must be a finite number")
    if abs(value) >= MAX_CREDITS or value != value.quantize(Decimal(1).scaleb(-MAX_DECIMALS)):
        raise ValueError(f"{name} must be below {MAX_CREDITS} with at most {MAX_DECIMALS} decimals")
    return value


def create_account(
    storage: Storage,
    name: str,
    *,
    subscription: str | Decimal = "0",
    payg: str | Decimal = "0",
    enterprise: str | Decimal = "0",
    free_calls: int = 0,
    rate_limit_per_minute: int = 500,
    with_key: bool = False,
) -> tuple[Account, str | None]:
    """The new account and, with `with_key`, its first API key in clear (shown once)."""
    if not name.strip():
        raise ValueError("an account needs a name")
    amounts = {k: parse_credits(v, k) for k, v in (("subscription", subscription), ("payg", payg), ("enterprise", enterprise))}
    if any(v < 0 for v in amounts.values()):
        raise ValueError("a new account's credits cannot be negative")
    account = storage.create_account(
        name.strip(), **amounts, free_calls=free_calls, rate_limit_per_minute=rate_limit_per_minute
    )
    key = create_key(storage, account.id)[0] if with_key else None
    return account, key


def create_key(storage: Storage, account_id: int) -> tuple[str, ApiKey]:
    """A new random key (the clear key is returned once; only its hash is stored)."""
    key = generate_key()
    return key, storage.add_api_key(account_id, key)


def add_credits(
    storage: Storage,
    account_id: int,
    *,
    subscription: str | Decimal = "0",
    payg: str | Decimal = "0",
    enterprise: str | Decimal = "0",
    note: str = "",
) -> Account:
    """Top-up (negative: take away, never below zero), recorded in the ledger as `credit` with
    the note (or a generated id) as its request id."""
    return storage.add_credits(
        account_id,
        note.strip() or f"admin-{uuid.uuid4()}",
        subscription=parse_credits(subscription, "subscription"),
        payg=parse_credits(payg, "payg"),
        enterprise=parse_credits(enterprise, "enterprise"),
    )


credits_text = format_credits  # every credit figure leaves as the same exact decimal text


def account_record(account: Account) -> dict:
    return {
        "id": account.id,
        "name": account.name,
        "subscription": credits_text(account.subscription),
        "payg": credits_text(account.payg),
        "enterprise": credits_text(account.enterprise),
        "total": credits_text(account.total),
        "free_calls": account.free_calls_allowance,
        "free_calls_left": account.free_calls_left(),
        "rate_limit_per_minute": account.rate_limit_per_minute,
    }


def key_record(key: ApiKey) -> dict:
    return {
        "id": key.id,
        "account_id": key.account_id,
        "prefix": key.prefix,
        "created_at": key.created_at,
        "revoked_at": key.revoked_at or "",
    }


def entry_record(entry: LedgerEntry) -> dict:
    return {
        "id": entry.id,
        "account_id": entry.account_id,
        "key_id": entry.key_id or 0,
        "request_id": entry.request_id,
        "kind": entry.kind,
        "amount": credits_text(entry.amount),
        "subscription_change": credits_text(entry.subscription_change),
        "payg_change": credits_text(entry.payg_change),
        "enterprise_change": credits_text(entry.enterprise_change),
        "free_calls_change": entry.free_calls_change,
        "subscription_after": credits_text(entry.subscription_after),
        "payg_after": credits_text(entry.payg_after),
        "enterprise_after": credits_text(entry.enterprise_after),
        "free_calls_used_after": entry.free_calls_used_after,
        "reverses": entry.reverses or 0,
        "created_at": entry.created_at,
    }

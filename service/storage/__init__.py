"""Accounts, API keys and the credit ledger behind one backend-neutral interface."""

from service.storage.base import (
    Account,
    ApiKey,
    InsufficientCredits,
    InsufficientFreeCalls,
    KeyExists,
    LedgerEntry,
    Storage,
)


def open_storage(database_url: str) -> Storage:
    """The backend for a CLEARBG_DATABASE_URL (only sqlite:///PATH for now)."""
    if database_url.startswith("sqlite:///"):
        from service.storage.sqlite import SqliteStorage

        return SqliteStorage(database_url[len("sqlite:///"):])
    raise ValueError(f"unsupported CLEARBG_DATABASE_URL {database_url!r}: use sqlite:///PATH")


__all__ = [
    "Account",
    "ApiKey",
    "InsufficientCredits",
    "InsufficientFreeCalls",
    "KeyExists",
    "LedgerEntry",
    "Storage",
    "open_storage",
]

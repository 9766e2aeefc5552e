"""Accounts, API keys and the credit ledger behind one backend-neutral interface."""

from service.storage.base import (
    Account,
    ApiKey,
    Hold,
    IdempotencyClaim,
    InsufficientCredits,
    InsufficientFreeCalls,
    KeyExists,
    LedgerEntry,
    Reservation,
    Storage,
    StorageUnavailable,
    StoredResponse,
    SweptReservation,
    UnknownAccount,
    User,
    UserExists,
)


def open_storage(database_url: str) -> Storage:
    """The backend for a CLEARBG_DATABASE_URL: sqlite:///PATH (the default) or
    postgresql://... (also postgres://), a libpq URL passed to psycopg as it is."""
    if database_url.startswith("sqlite:///"):
        from service.storage.sqlite import SqliteStorage

        return SqliteStorage(database_url[len("sqlite:///"):])
    if database_url.startswith(("postgresql://", "postgres://")):
        from service.storage.postgres import PostgresStorage  # psycopg only when used

        return PostgresStorage(database_url)
    raise ValueError(
        f"unsupported CLEARBG_DATABASE_URL {database_url!r}: use sqlite:///PATH or postgresql://..."
    )


__all__ = [
    "Account",
    "ApiKey",
    "Hold",
    "IdempotencyClaim",
    "InsufficientCredits",
    "InsufficientFreeCalls",
    "KeyExists",
    "LedgerEntry",
    "Reservation",
    "Storage",
    "StorageUnavailable",
    "StoredResponse",
    "SweptReservation",
    "UnknownAccount",
    "User",
    "UserExists",
    "open_storage",
]

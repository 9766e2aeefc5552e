"""The development account a fresh install creates, so `make run` works at once."""

from __future__ import annotations

import secrets
import sys
from decimal import Decimal
from typing import TextIO

from service.logging import get_logger
from service.storage import KeyExists, Storage, UserExists
from service.storage.base import generate_key

log = get_logger(__name__)

# The documented example balance (GET /v1.0/account on the API page).
DEV_ACCOUNT = dict(subscription=Decimal(45), payg=Decimal(5), enterprise=Decimal(0), free_calls=50)
# The development account's dashboard user (service/dashboard).
DEV_USER_EMAIL = "dev@localhost"


def ensure_dev_account(storage: Storage, dev_api_key: str | None, out: TextIO = sys.stdout) -> None:
    """Empty database: create the development account with `dev_api_key` (or a random key)
    and its dashboard user (a random password), and print both once on `out`, outside the JSON
    log. Existing database: register `dev_api_key` for the oldest account if it is not known
    yet, so a fixed key always works. Safe when several servers start together on one
    database: one of them creates it."""
    from service.dashboard.passwords import hash_password  # argon2 only when serving

    key = dev_api_key or generate_key()
    password = secrets.token_urlsafe(12)
    user = (DEV_USER_EMAIL, hash_password(password))
    if storage.create_first_account("development", key, user=user, **DEV_ACCOUNT) is not None:
        out.write(f"Development API key: {key}\n")
        out.write(f"Development dashboard user: {DEV_USER_EMAIL}  password: {password}\n")
        out.flush()
        return
    ensure_dev_user(storage, out)
    if dev_api_key and storage.find_key(dev_api_key) is None:
        account = storage.first_account()
        assert account is not None
        try:
            storage.add_api_key(account.id, dev_api_key)
        except KeyExists:
            if storage.find_key(dev_api_key) is None:  # known but revoked: a revoked key stays revoked
                log.warning("dev_api_key_revoked", detail="CLEARBG_DEV_API_KEY was revoked; it is not re-enabled")


def ensure_dev_user(storage: Storage, out: TextIO = sys.stdout) -> None:
    """A database from before the dashboard (no user yet) whose oldest account is the
    development account: that account gets the user DEV_USER_EMAIL with a random password,
    printed once on `out`. Servers starting together make one (the e-mail is unique)."""
    from service.dashboard.service import create_user  # argon2 only where a user is made

    account = storage.first_account()
    if account is None or account.name != "development" or storage.count_users():
        return
    password = secrets.token_urlsafe(12)
    try:
        create_user(storage, DEV_USER_EMAIL, account_id=account.id, password=password)
    except UserExists:
        return
    out.write(f"Development dashboard user: {DEV_USER_EMAIL}  password: {password}\n")
    out.flush()

"""Passwords: argon2id (argon2-cffi) with OWASP's minimum settings (19 MiB, 2 passes, 1 lane):
about 50 ms per hash on this project's 2-core machines, so a sign-in stays quick while a stolen
hash costs an attacker that much memory and time per guess."""

from __future__ import annotations

import functools
import secrets

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

HASHER = PasswordHasher(time_cost=2, memory_cost=19456, parallelism=1)
MIN_LENGTH = 8
# argon2 takes any length; a cap keeps one request from costing more than a normal sign-in.
MAX_LENGTH = 256


def check_new_password(password: str) -> str | None:
    """Why `password` cannot be used, or None."""
    if len(password) < MIN_LENGTH:
        return f"A password needs at least {MIN_LENGTH} characters."
    if len(password) > MAX_LENGTH:
        return f"A password may have at most {MAX_LENGTH} characters."
    return None


def hash_password(password: str) -> str:
    return HASHER.hash(password)


@functools.cache
def _dummy_hash() -> str:
    return HASHER.hash(secrets.token_urlsafe(16))


def verify_password(stored: str | None, password: str) -> bool:
    """Whether `password` matches `stored`. With no stored hash (unknown user, or one without a
    password) it still spends a verification's time, so timing does not tell who exists."""
    if len(password) > MAX_LENGTH:
        return False
    try:
        return HASHER.verify(stored or _dummy_hash(), password) and stored is not None
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False

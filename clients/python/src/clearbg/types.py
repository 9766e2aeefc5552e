"""What the calls return: a removal's result (the picture and what the server said about it) and
the account's balances."""

from __future__ import annotations

import os
import pathlib
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Dict, Optional, Union

__all__ = ["Foreground", "RateLimit", "RemovalResult", "Credits", "Account"]

PathLike = Union[str, "os.PathLike[str]"]


@dataclass(frozen=True)
class Foreground:
    """Where the subject is in the result, in output pixels (X-Foreground-*)."""

    top: int
    left: int
    width: int
    height: int


@dataclass(frozen=True)
class RateLimit:
    """The key's megapixel-images per minute (X-RateLimit-*); reset in Unix seconds."""

    limit: Optional[int]
    remaining: Optional[int]
    reset: Optional[int]


@dataclass(frozen=True)
class RemovalResult:
    """The cut-out: `content` is the file the server sent (PNG, JPG, WebP or ZIP)."""

    content: bytes = field(repr=False)
    content_type: str
    width: int
    height: int
    # X-Type (person, product, animal, car, other, or `<type>-<class>` with type_level 2);
    # None with type_level none.
    type: Optional[str]
    credits_charged: Decimal
    credits_remaining: Decimal
    foreground: Foreground
    rate_limit: RateLimit
    request_id: Optional[str]
    # True when this is the kept answer of an earlier call with the same Idempotency-Key
    # (a retry after a lost answer): charged once, for that call.
    replayed: bool = False
    headers: Dict[str, str] = field(default_factory=dict, repr=False)

    def save(self, path: PathLike) -> pathlib.Path:
        """Writes `content` to `path` (its folder must exist) and returns the path."""
        target = pathlib.Path(path)
        target.write_bytes(self.content)
        return target

    def __repr__(self) -> str:
        return (
            f"RemovalResult({self.content_type}, {len(self.content)} bytes, {self.width}x{self.height}, "
            f"type={self.type!r}, credits_charged={self.credits_charged}, credits_remaining={self.credits_remaining}, "
            f"replayed={self.replayed}, request_id={self.request_id!r})"
        )


@dataclass(frozen=True)
class Credits:
    total: Decimal
    subscription: Decimal
    payg: Decimal
    enterprise: Decimal


@dataclass(frozen=True)
class Account:
    """GET /v1.0/account: the balances, this month's free preview calls left, the sizes allowed."""

    credits: Credits
    free_calls: int
    sizes: str
    request_id: Optional[str] = None

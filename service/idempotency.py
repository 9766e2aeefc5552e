"""Idempotent removals: a call with an `Idempotency-Key` (Stripe's convention) is run and charged
at most once per account and key within 24 hours.

- The first call with a key runs as usual; once its answer is delivered it is kept (body and
  headers) for replays. A repeat gets that answer again, byte for byte, with
  `Idempotent-Replayed: true`, and is charged nothing.
- A repeat while the first still runs waits for it (up to CLEARBG_IDEMPOTENCY_WAIT_S), then
  answers 409 `idempotency_in_flight` with Retry-After.
- The same key with other parameters (the request's fields, files included, hashed) is 422
  `idempotency_key_reused`.
- A call that fails keeps nothing: the key is free again and a retry runs anew.
- Kept answers take at most CLEARBG_IDEMPOTENCY_MAX_MB in total; the oldest are dropped first.
  A repeat of a dropped one is 409 `idempotency_result_evicted` (it was charged and delivered
  once; running it again would charge twice).

The decisions are the storage's (one transaction each, so servers sharing a database agree);
this module hashes, waits, and turns records back into a `Delivery`.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
from collections.abc import Awaitable, Callable, Mapping
from decimal import Decimal
from typing import TYPE_CHECKING

from engine.types import Box, ImageInfo, RemovalResult
from service.errors import ApiError
from service.logging import get_logger
from service.storage import IdempotencyClaim, Storage, StoredResponse

if TYPE_CHECKING:
    from service.removal import Delivery

log = get_logger(__name__)

TTL_S = 24 * 3600
# How long a running call holds its key before another server may take it over (its server
# died mid-call). Far above any call: the gateway gives a request at most 300 s.
LEASE_S = 15 * 60
MAX_KEY_LENGTH = 255  # Stripe's bound
REPLAYED_HEADER = ("idempotent-replayed", "true")
FIRST_POLL_S = 0.05
MAX_POLL_S = 0.5
IN_FLIGHT_RETRY_AFTER_S = 1


class IdempotencyRefused(ApiError):
    """The key refuses this call (400, 409, 422): nothing ran, nothing was charged."""


def in_flight() -> IdempotencyRefused:
    return IdempotencyRefused(
        409,
        "idempotency_in_flight",
        "A call with this Idempotency-Key is still running; retry shortly to get its result.",
        title="Conflict",
        headers=(("retry-after", str(IN_FLIGHT_RETRY_AFTER_S)),),
    )


def key_reused() -> IdempotencyRefused:
    return IdempotencyRefused(
        422,
        "idempotency_key_reused",
        "This Idempotency-Key was already used with other parameters; use a new key for a new request.",
        title="Unprocessable entity",
    )


def result_evicted() -> IdempotencyRefused:
    return IdempotencyRefused(
        409,
        "idempotency_result_evicted",
        "The call with this Idempotency-Key was charged and delivered, but its result is no longer kept "
        "for replays; use a new key to run it again.",
        title="Conflict",
    )


def checked_key(raw: str) -> str:
    key = raw.strip()
    if len(key) > MAX_KEY_LENGTH or not key.isascii() or not key.isprintable():
        raise IdempotencyRefused(
            400,
            "invalid_idempotency_key",
            f"The Idempotency-Key header must be 1 to {MAX_KEY_LENGTH} printable ASCII characters (a UUID, say).",
        )
    return key


def fingerprint(fields: Mapping[str, str | bytes], variant: str) -> str:
    """The request as the key binds it: every field (files' bytes included), in name order,
    and what form of answer was asked (`variant`: image or JSON). Each part is length-prefixed,
    so no two different requests can hash the same input."""
    digest = hashlib.sha256()

    def part(data: bytes) -> None:
        digest.update(len(data).to_bytes(8, "big"))
        digest.update(data)

    part(variant.encode())
    for name in sorted(fields):
        value = fields[name]
        part(name.encode())
        part((b"b" + value) if isinstance(value, bytes) else (b"s" + value.encode()))
    return digest.hexdigest()


def summary_of(delivery: Delivery) -> str:
    """The typed answer's fields (the typed door rebuilds its response from them)."""
    result, box = delivery.result, delivery.result.foreground
    return json.dumps(
        {
            "width": result.width, "height": result.height, "foreground_type": result.foreground_type,
            "foreground_label": result.foreground_label,
            "box": [box.top, box.left, box.width, box.height],
            "charged": str(delivery.charged), "remaining": str(delivery.remaining),
            "report_type": delivery.report_type,
        },
        separators=(",", ":"),
    )


def replayed(response: StoredResponse) -> Delivery:
    from service.removal import Delivery  # removal.py imports this module

    if response.body is None:
        raise result_evicted()
    s = json.loads(response.summary)
    result = RemovalResult(
        data=response.body,
        content_type=response.content_type,
        width=s["width"],
        height=s["height"],
        foreground_type=s["foreground_type"],
        foreground=Box(*s["box"]),
        input=ImageInfo(0, 0, ""),  # not kept: nothing reads it after delivery
        foreground_label=s["foreground_label"],
    )
    return Delivery(
        response.body, response.content_type, (*response.headers, REPLAYED_HEADER), result,
        Decimal(s["charged"]), Decimal(s["remaining"]), s["report_type"],
    )


class Idempotency:
    def __init__(
        self,
        storage: Storage,
        max_bytes: int,
        wait_s: float,
        clock: Callable[[], float] = time.time,
    ):
        self.storage = storage
        self.max_bytes = max_bytes
        self.wait_s = wait_s
        self.clock = clock

    async def _db(self, fn, *args, **kwargs):
        return await asyncio.to_thread(fn, *args, **kwargs)

    async def run(
        self,
        account_id: int,
        raw_key: str,
        fields: Mapping[str, str | bytes],
        variant: str,
        request_id: str,
        call: Callable[[], Awaitable[Delivery]],
    ) -> Delivery:
        """`call()` at most once for this account and key; else the kept answer, or an
        IdempotencyRefused."""
        key = checked_key(raw_key)
        digest = await asyncio.to_thread(fingerprint, fields, variant)  # a 22 MB upload: ~20 ms
        loop = asyncio.get_running_loop()
        give_up_at = loop.time() + self.wait_s
        poll = FIRST_POLL_S
        while True:
            claim = await self._claim(account_id, key, digest, request_id)
            if claim.outcome == "started":
                return await self._run_first(account_id, key, request_id, call)
            if claim.outcome == "replay":
                log.info("idempotent_replay", account_id=account_id)
                return replayed(claim.response)
            if claim.outcome == "mismatch":
                raise key_reused()
            # in_flight: the first call's answer (or its failure, which frees the key) is near.
            if loop.time() + poll > give_up_at:
                raise in_flight()
            await asyncio.sleep(poll)
            poll = min(MAX_POLL_S, poll * 2)

    async def _claim(self, account_id: int, key: str, digest: str, request_id: str) -> IdempotencyClaim:
        claiming = asyncio.ensure_future(
            self._db(
                self.storage.claim_idempotency, account_id, key, digest, request_id,
                now=self.clock(), ttl_s=TTL_S, lease_s=LEASE_S,
            )
        )
        try:
            return await asyncio.shield(claiming)
        except asyncio.CancelledError:
            # Gone while the database decided: a key it gave us is handed back once decided.
            claiming.add_done_callback(lambda done: self._release_after(done, account_id, key, request_id))
            raise

    def _release_after(self, done: asyncio.Future, account_id: int, key: str, request_id: str) -> None:
        if not done.cancelled() and done.exception() is None and done.result().outcome == "started":
            asyncio.ensure_future(self._db(self.storage.release_idempotency, account_id, key, request_id))

    async def _run_first(
        self, account_id: int, key: str, request_id: str, call: Callable[[], Awaitable[Delivery]]
    ) -> Delivery:
        try:
            delivery = await call()
        except BaseException:
            # Failed (or the caller went away): nothing was charged, so nothing is kept and a
            # retry runs anew. Shielded: a second cancellation must not leave the key held.
            release = asyncio.ensure_future(self._db(self.storage.release_idempotency, account_id, key, request_id))
            try:
                await asyncio.shield(release)
            except asyncio.CancelledError:
                pass
            except Exception:  # noqa: BLE001 - the call's own error is the one to report
                log.error("idempotency_release_failed", exc_info=True)
            raise
        response = StoredResponse(delivery.content_type, delivery.headers, summary_of(delivery), delivery.body)
        try:
            await self._db(
                self.storage.complete_idempotency, account_id, key, request_id, response,
                now=self.clock(), max_bytes=self.max_bytes,
            )
        except Exception:  # noqa: BLE001 - delivered and charged: the answer still goes out
            # The key stays running until its lease ends, so a repeat is refused, never charged twice.
            log.error("idempotency_store_failed", exc_info=True)
        return delivery

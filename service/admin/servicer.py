"""The gRPC AdminService: the CLI's operations for programs (proto/clearbg/v1/admin.proto).

Who may call it: `service.server` registers it only when CLEARBG_ADMIN_TOKEN is set, every
call must carry `authorization: Bearer <token>` (compared in constant time), and the public
gateway neither transcodes it nor passes its native gRPC path (gateway/envoy.yaml answers 404),
so it is reachable only on the server's own gRPC port, which listens on loopback by default.
"""

from __future__ import annotations

import asyncio
import hmac
from collections.abc import Callable
from typing import Any

import grpc

from clearbg.v1 import admin_pb2, admin_pb2_grpc
from service.admin import operations
from service.logging import get_logger
from service.storage import KeyExists, Storage, UnknownAccount
from service.timestamps import timestamp

log = get_logger(__name__)

SERVICE_NAME = admin_pb2.DESCRIPTOR.services_by_name["AdminService"].full_name
MIN_TOKEN_LENGTH = 16


def _account(account) -> admin_pb2.ManagedAccount:
    return admin_pb2.ManagedAccount(**operations.account_record(account))


def _key(key) -> admin_pb2.ManagedApiKey:
    record = operations.key_record(key)
    record.update(created_at=timestamp(record["created_at"]), revoked_at=timestamp(record["revoked_at"]))
    return admin_pb2.ManagedApiKey(**record)


def _entry(entry) -> admin_pb2.LedgerEntry:
    record = operations.entry_record(entry)
    record.update(created_at=timestamp(record["created_at"]))
    return admin_pb2.LedgerEntry(**record)


class AdminServicer(admin_pb2_grpc.AdminServiceServicer):
    def __init__(self, storage: Storage, token: str):
        if len(token) < MIN_TOKEN_LENGTH:
            raise ValueError(f"the admin token must be at least {MIN_TOKEN_LENGTH} characters")
        self.storage = storage
        self._expected = f"Bearer {token}".encode()

    async def _run(self, context: grpc.aio.ServicerContext, method: str, fn: Callable[..., Any], *args, **kwargs):
        """Checks the token, then runs `fn` in a thread; bad input is INVALID_ARGUMENT, a
        missing account NOT_FOUND, never an internal message."""
        metadata = dict(context.invocation_metadata() or ())
        given = metadata.get("authorization", "")
        if not hmac.compare_digest(given.encode() if isinstance(given, str) else b"", self._expected):
            log.warning("admin_refused", method=method, peer=context.peer())
            await context.abort(grpc.StatusCode.UNAUTHENTICATED, "admin calls need 'authorization: Bearer <CLEARBG_ADMIN_TOKEN>'")
        try:
            result = await asyncio.to_thread(fn, *args, **kwargs)
        except UnknownAccount as exc:
            await context.abort(grpc.StatusCode.NOT_FOUND, str(exc))
        except (ValueError, KeyExists) as exc:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
        log.info("admin", method=method, peer=context.peer())
        return result

    async def CreateAccount(self, request, context):
        account, key = await self._run(
            context, "CreateAccount", operations.create_account, self.storage, request.name,
            subscription=request.subscription, payg=request.payg, enterprise=request.enterprise,
            free_calls=request.free_calls, rate_limit_per_minute=request.rate_limit_per_minute or 500,
            with_key=request.with_api_key,
        )
        return admin_pb2.CreateAccountResponse(account=_account(account), api_key=key or "")

    async def DescribeAccount(self, request, context):
        account = await self._run(context, "DescribeAccount", self._existing, request.account_id)
        return admin_pb2.DescribeAccountResponse(account=_account(account))

    async def ListAccounts(self, request, context):
        accounts = await self._run(context, "ListAccounts", self.storage.list_accounts)
        return admin_pb2.ListAccountsResponse(accounts=[_account(a) for a in accounts])

    async def UpdateAccount(self, request, context):
        account = await self._run(
            context, "UpdateAccount", self.storage.update_account, request.account_id,
            name=request.name if request.HasField("name") else None,
            free_calls=request.free_calls if request.HasField("free_calls") else None,
            rate_limit_per_minute=request.rate_limit_per_minute if request.HasField("rate_limit_per_minute") else None,
        )
        return admin_pb2.UpdateAccountResponse(account=_account(account))

    async def AddCredits(self, request, context):
        account = await self._run(
            context, "AddCredits", operations.add_credits, self.storage, request.account_id,
            subscription=request.subscription, payg=request.payg, enterprise=request.enterprise, note=request.note,
        )
        return admin_pb2.AddCreditsResponse(account=_account(account))

    async def CreateApiKey(self, request, context):
        key, stored = await self._run(context, "CreateApiKey", operations.create_key, self.storage, request.account_id)
        return admin_pb2.CreateApiKeyResponse(api_key=key, key=_key(stored))

    async def ListApiKeys(self, request, context):
        keys = await self._run(context, "ListApiKeys", self._keys, request.account_id)
        return admin_pb2.ListApiKeysResponse(keys=[_key(k) for k in keys])

    async def RevokeApiKey(self, request, context):
        revoked = await self._run(context, "RevokeApiKey", self.storage.revoke_key, request.key_id)
        return admin_pb2.RevokeApiKeyResponse(revoked=revoked)

    async def ListLedgerEntries(self, request, context):
        entries = await self._run(context, "ListLedgerEntries", self._ledger, request.account_id, request.limit or None)
        return admin_pb2.ListLedgerEntriesResponse(
            entries=[_entry(e) for e in entries]
        )

    # Plain look-ups that must say NOT_FOUND for an unknown account rather than answer empty.

    def _existing(self, account_id: int):
        account = self.storage.get_account(account_id)
        if account is None:
            raise UnknownAccount(f"no account {account_id}")
        return account

    def _keys(self, account_id: int):
        self._existing(account_id)
        return self.storage.list_keys(account_id)

    def _ledger(self, account_id: int, limit: int | None):
        self._existing(account_id)
        if limit is not None and limit < 0:
            raise ValueError("limit must be >= 0")
        return self.storage.ledger(account_id, limit)

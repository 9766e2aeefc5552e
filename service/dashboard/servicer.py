"""The DashboardService servicer: metadata in, the use case (service.py), cookies and JSON out."""

from __future__ import annotations

import grpc
from google.api import httpbody_pb2

from clearbg.v1 import dashboard_pb2, dashboard_pb2_grpc
from service.credits import format_credits
from service.dashboard.service import Answer, Dashboard
from service.dashboard.web import WebRequest, parse_cookies
from service.limits import client_ip
from service.servicers import _call, _fail
from service.storage import Account, ApiKey, User
from service.timestamps import timestamp

SERVICE_NAME = dashboard_pb2.DESCRIPTOR.services_by_name["DashboardService"].full_name


def web_request(context: grpc.aio.ServicerContext, metadata: dict[str, str], secure_cookies: bool) -> WebRequest:
    """The browser's side of a call, from the metadata Envoy forwards (x-clearbg-* are set by
    the gateway and overwrite anything a client sends)."""
    cookies = parse_cookies(v for k, v in (context.invocation_metadata() or ()) if k == "cookie" and isinstance(v, str))
    tls = metadata.get("x-clearbg-tls", "").strip()
    return WebRequest(
        cookies=cookies,
        csrf_token=metadata.get("x-csrf-token", "").strip(),
        origin=metadata.get("origin"),
        fetch_site=metadata.get("sec-fetch-site"),
        host=metadata.get("x-clearbg-host"),
        secure=secure_cookies or tls not in ("", "-"),
        client_ip=client_ip(metadata.get("x-clearbg-client-ip"), context.peer()),
    )


def _user(user: User, account: Account | None) -> dashboard_pb2.DashboardUser:
    return dashboard_pb2.DashboardUser(
        email=user.email, account_name=account.name if account else "", has_password=user.password_hash is not None
    )


def _key(key: ApiKey) -> dashboard_pb2.DashboardKey:
    return dashboard_pb2.DashboardKey(
        id=key.id, name=key.name, prefix=key.prefix, created_at=timestamp(key.created_at),
        last_used_at=timestamp(key.last_used_at), revoked_at=timestamp(key.revoked_at),
    )


class DashboardServicer(dashboard_pb2_grpc.DashboardServiceServicer):
    def __init__(self, dashboard: Dashboard):
        self.dashboard = dashboard

    async def _run(self, context, method: str, use_case):
        """Calls `use_case(web_request)`; sends an Answer's cookies as initial metadata (the
        gateway makes them Set-Cookie headers) and returns its value."""
        with _call(context, method) as (metadata, request_id):
            try:
                request = web_request(context, metadata, self.dashboard.settings.secure_cookies)
                answer = await use_case(request, request_id)
            except Exception as exc:  # noqa: BLE001 - every error leaves as an API error
                await _fail(context, exc)
            if isinstance(answer, Answer):
                if answer.cookies:
                    await context.send_initial_metadata([("set-cookie", cookie) for cookie in answer.cookies])
                return answer.value
            return answer

    async def GetSession(self, request, context):
        view = await self._run(context, "GetSession", lambda web, _: self.dashboard.session(web))
        return dashboard_pb2.GetSessionResponse(
            signed_in=view.signed_in, csrf_token=view.csrf_token, sign_up_open=view.sign_up_open,
            user=_user(view.user, view.account) if view.user else None,
        )

    async def SignUp(self, request, context):
        done = await self._run(context, "SignUp", lambda web, _: self.dashboard.sign_up(web, request.email, request.password))
        return dashboard_pb2.SignUpResponse(user=_user(done.user, done.account), csrf_token=done.csrf_token)

    async def SignIn(self, request, context):
        done = await self._run(context, "SignIn", lambda web, _: self.dashboard.sign_in(web, request.email, request.password))
        return dashboard_pb2.SignInResponse(user=_user(done.user, done.account), csrf_token=done.csrf_token)

    async def RedeemSignInLink(self, request, context):
        done = await self._run(context, "RedeemSignInLink", lambda web, _: self.dashboard.redeem_sign_in_link(web, request.token))
        return dashboard_pb2.RedeemSignInLinkResponse(user=_user(done.user, done.account), csrf_token=done.csrf_token)

    async def SignOut(self, request, context):
        await self._run(context, "SignOut", lambda web, _: self.dashboard.sign_out(web))
        return dashboard_pb2.SignOutResponse()

    async def ChangePassword(self, request, context):
        done = await self._run(
            context, "ChangePassword",
            lambda web, _: self.dashboard.change_password(web, request.current_password, request.new_password),
        )
        return dashboard_pb2.ChangePasswordResponse(csrf_token=done.csrf_token)

    async def GetOverview(self, request, context):
        account = await self._run(context, "GetOverview", lambda web, _: self.dashboard.overview(web))
        return dashboard_pb2.GetOverviewResponse(
            account_name=account.name,
            total=format_credits(account.total),
            subscription=format_credits(account.subscription),
            payg=format_credits(account.payg),
            enterprise=format_credits(account.enterprise),
            free_calls_left=account.free_calls_left(),
            free_calls_per_month=account.free_calls_allowance,
            rate_limit_per_minute=account.rate_limit_per_minute,
        )

    async def ListKeys(self, request, context):
        keys = await self._run(context, "ListKeys", lambda web, _: self.dashboard.list_keys(web))
        return dashboard_pb2.ListKeysResponse(keys=[_key(k) for k in keys])

    async def CreateKey(self, request, context):
        key, stored = await self._run(context, "CreateKey", lambda web, _: self.dashboard.create_key(web, request.name))
        return dashboard_pb2.CreateKeyResponse(api_key=key, key=_key(stored))

    async def RevokeKey(self, request, context):
        key = await self._run(context, "RevokeKey", lambda web, _: self.dashboard.revoke_key(web, request.key_id))
        return dashboard_pb2.RevokeKeyResponse(key=_key(key))

    async def GetUsage(self, request, context):
        usage = await self._run(context, "GetUsage", lambda web, _: self.dashboard.usage(web))
        return dashboard_pb2.GetUsageResponse(
            days=[dashboard_pb2.UsageDay(date=d, images=n, credits=format_credits(c)) for d, n, c in usage.days],
            calls=[
                dashboard_pb2.UsageCall(
                    time=timestamp(call.created_at), key_name=call.key_name, key_prefix=call.key_prefix, size=call.size,
                    credits=format_credits(call.amount), status="refunded" if call.refunded else "succeeded",
                )
                for call in usage.calls
            ],
        )

    async def TryPhoto(self, request, context):
        result = await self._run(
            context, "TryPhoto",
            lambda web, request_id: self.dashboard.try_photo(web, request.body.content_type, request.body.data, request_id),
        )
        await context.send_initial_metadata(result.headers)
        return dashboard_pb2.TryPhotoResponse(
            body=httpbody_pb2.HttpBody(content_type=result.content_type, data=result.body)
        )

"""The dashboard's use cases: accounts for people, sessions, keys, usage and "Try it".

No gRPC here: each call takes the browser's `WebRequest` and plain values, and returns plain
values plus the Set-Cookie headers to send; failures are `ApiError`s in the REST error shape.
Everything a user sees is read for the account of the session's user, never from an id the
browser sends, so one account cannot reach another's keys or usage.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import math
import re
import unicodedata
from dataclasses import dataclass
from decimal import Decimal

from service import params
from service.config import Settings
from service.credits import format_credits, paid_call
from service.errors import ApiError, bad_request
from service.limits import cost_for_pixels, preview_ip_limited, rate_limited
from service.logging import get_logger
from service.removal import RemovalService
from service.rest_request import parse_body
from service.storage import Account, ApiKey, Storage, User, UserExists
from service.storage.base import Call, generate_key
from service.dashboard import passwords
from service.dashboard.web import CSRF_COOKIE, SESSION_COOKIE, SESSION_LIFETIME, WebRequest, csrf_for_session, new_token

log = get_logger(__name__)

# Failed sign-ins counted over this window: beyond the per-address or per-IP budget, 429 until
# the oldest counted failure leaves the window. Per e-mail, a guesser gets 10 tries a quarter
# hour; per IP, more, since people behind one address share it.
FAILURE_WINDOW = dt.timedelta(minutes=15)
FAILURES_PER_EMAIL = 10
FAILURES_PER_IP = 50
USAGE_DAYS = 30
RECENT_CALLS = 25
MAX_KEY_NAME = 100
MAX_EMAIL = 254
_EMAIL = re.compile(r"[^@\s]+@[^@\s]+")
SIGN_IN_LINK_LIFETIME = dt.timedelta(hours=24)


@dataclass(frozen=True)
class Answer:
    """A value for the servicer, and the Set-Cookie headers that go with it."""

    value: object = None
    cookies: tuple[str, ...] = ()


@dataclass(frozen=True)
class SignedIn:
    user: User
    account: Account
    csrf_token: str


@dataclass(frozen=True)
class SessionView:
    signed_in: bool
    csrf_token: str
    sign_up_open: bool
    user: User | None = None
    account: Account | None = None


@dataclass(frozen=True)
class Usage:
    days: list[tuple[str, int, Decimal]]  # (YYYY-MM-DD, images, credits), every day of the window
    calls: list[Call]


@dataclass(frozen=True)
class TryResult:
    body: bytes
    content_type: str
    headers: tuple[tuple[str, str], ...]


def normalize_email(email: str) -> str:
    return unicodedata.normalize("NFKC", email).strip().lower()


def not_signed_in() -> ApiError:
    return ApiError(401, "not_signed_in", "Sign in to the dashboard first.")


def utc_now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


class Dashboard:
    def __init__(self, storage: Storage, settings: Settings, removal: RemovalService | None = None):
        self.storage = storage
        self.settings = settings
        self.removal = removal  # the engine and limits "Try it" shares with the API

    async def _db(self, fn, *args, **kwargs):
        return await asyncio.to_thread(fn, *args, **kwargs)

    # -- sessions ------------------------------------------------------------------------------

    async def _user(self, request: WebRequest) -> User | None:
        token = request.session_token
        return await self._db(self.storage.find_session, token) if token else None

    async def _signed_in(self, request: WebRequest, change: bool = False) -> tuple[User, Account]:
        """The session's user and account; with `change`, the call must carry its CSRF token."""
        user = await self._user(request)
        if user is None:
            raise not_signed_in()
        if change:
            request.check_csrf(csrf_for_session(request.session_token or ""))
        account = await self._db(self.storage.get_account, user.account_id)
        if account is None:
            raise not_signed_in()
        return user, account

    async def _start_session(self, request: WebRequest, user: User) -> Answer:
        """A new session (a new token: never the one the browser had) for `user`."""
        if request.session_token:
            await self._db(self.storage.end_session, request.session_token)
        token = new_token()
        await self._db(self.storage.create_session, user.id, token, utc_now() + SESSION_LIFETIME)
        account = await self._db(self.storage.get_account, user.account_id)
        cookies = (request.set_cookie(SESSION_COOKIE, token, SESSION_LIFETIME), request.clear_cookie(CSRF_COOKIE))
        log.info("dashboard_signed_in", user_id=user.id, account_id=user.account_id)
        return Answer(SignedIn(user, account, csrf_for_session(token)), cookies)

    @staticmethod
    def _check_pre_session_csrf(request: WebRequest) -> None:
        """Signing in or up: the CSRF cookie's token, or a (possibly stale) session's own."""
        session = request.session_token
        request.check_csrf(request.csrf_cookie or (csrf_for_session(session) if session else None))

    async def session(self, request: WebRequest) -> Answer:
        """Who is signed in; else a pre-session CSRF token for signing in or up (double submit:
        the same value in an HttpOnly cookie and in this answer)."""
        user = await self._user(request)
        if user is not None:
            account = await self._db(self.storage.get_account, user.account_id)
            token = csrf_for_session(request.session_token or "")
            return Answer(SessionView(True, token, self.settings.sign_up_open, user, account))
        token = request.csrf_cookie or new_token()
        cookies = () if request.csrf_cookie else (request.set_cookie(CSRF_COOKIE, token),)
        return Answer(SessionView(False, token, self.settings.sign_up_open), cookies)

    async def sign_up(self, request: WebRequest, email: str, password: str) -> Answer:
        if not self.settings.sign_up_open:
            raise ApiError(403, "sign_up_closed", "Sign-up is closed on this server: ask its operator for an account.")
        self._check_pre_session_csrf(request)
        email = normalize_email(email)
        if len(email) > MAX_EMAIL or not _EMAIL.fullmatch(email):
            raise bad_request("invalid_email", "Enter an e-mail address such as name@example.com.")
        problem = passwords.check_new_password(password)
        if problem:
            raise bad_request("invalid_password", problem)
        hashed = await self._db(passwords.hash_password, password)
        try:
            user = await self._db(
                self.storage.create_user, email, hashed, account_name=email, free_calls=self.settings.sign_up_free_calls
            )
        except UserExists:
            raise ApiError(409, "email_taken", "An account with this e-mail address exists already: sign in.", title="Conflict") from None
        log.info("dashboard_signed_up", user_id=user.id, account_id=user.account_id)
        return await self._start_session(request, user)

    async def _check_failures(self, email: str, ip: str) -> None:
        now = utc_now()
        failures = await self._db(self.storage.sign_in_failures, email, ip, now - FAILURE_WINDOW)
        oldest = [
            stamp for count, limit, stamp in (
                (failures.by_email, FAILURES_PER_EMAIL, failures.oldest_by_email),
                (failures.by_ip, FAILURES_PER_IP, failures.oldest_by_ip),
            ) if count >= limit and stamp
        ]
        if oldest:
            free_at = max(dt.datetime.fromisoformat(stamp) for stamp in oldest) + FAILURE_WINDOW
            wait = max(1, math.ceil((free_at - now).total_seconds()))
            log.info("dashboard_sign_in_limited", retry_after=wait)
            raise ApiError(
                429, "too_many_sign_in_attempts",
                f"Too many failed sign-ins; try again in {wait} seconds.", headers=[("retry-after", str(wait))],
            )

    async def _verify(self, request: WebRequest, user: User | None, email: str, password: str) -> bool:
        """Checks a password within the failed-sign-in limits (429 when over them)."""
        await self._check_failures(email, request.client_ip)
        ok = await self._db(passwords.verify_password, user.password_hash if user else None, password)
        if ok:
            await self._db(self.storage.clear_sign_in_failures, email)
        else:
            await self._db(self.storage.record_sign_in_failure, email, request.client_ip)
        return ok

    async def sign_in(self, request: WebRequest, email: str, password: str) -> Answer:
        self._check_pre_session_csrf(request)
        email = normalize_email(email)[:MAX_EMAIL]
        if not email or not password:
            raise bad_request("missing_credentials", "Enter your e-mail address and your password.")
        user = await self._db(self.storage.find_user, email)
        if not await self._verify(request, user, email, password) or user is None:
            raise ApiError(401, "invalid_credentials", "The e-mail address or the password is wrong.")
        return await self._start_session(request, user)

    async def redeem_sign_in_link(self, request: WebRequest, token: str) -> Answer:
        self._check_pre_session_csrf(request)
        user = await self._db(self.storage.redeem_sign_in_link, token.strip()) if token.strip() else None
        if user is None:
            raise ApiError(401, "invalid_sign_in_link", "This sign-in link is unknown, used or expired: ask for a new one.")
        return await self._start_session(request, user)

    async def sign_out(self, request: WebRequest) -> Answer:
        user = await self._user(request)
        if user is not None:
            request.check_csrf(csrf_for_session(request.session_token or ""))
            await self._db(self.storage.end_session, request.session_token)
            log.info("dashboard_signed_out", user_id=user.id)
        return Answer(None, (request.clear_cookie(SESSION_COOKIE),))

    async def change_password(self, request: WebRequest, current: str, new: str) -> Answer:
        user, _ = await self._signed_in(request, change=True)
        if user.password_hash is not None and not await self._verify(request, user, user.email, current):
            raise ApiError(403, "wrong_password", "The current password is wrong.")
        problem = passwords.check_new_password(new)
        if problem:
            raise bad_request("invalid_password", problem)
        hashed = await self._db(passwords.hash_password, new)
        await self._db(self.storage.set_password, user.id, hashed)  # ends every session of the user
        log.info("dashboard_password_changed", user_id=user.id)
        return await self._start_session(dataclasses.replace(request, cookies={}), user)

    # -- account, keys, usage ------------------------------------------------------------------

    async def overview(self, request: WebRequest) -> Account:
        return (await self._signed_in(request))[1]

    async def list_keys(self, request: WebRequest) -> list[ApiKey]:
        _, account = await self._signed_in(request)
        return await self._db(self.storage.list_keys, account.id)

    async def create_key(self, request: WebRequest, name: str) -> tuple[str, ApiKey]:
        """The clear key (returned here once, never logged) and its stored record."""
        _, account = await self._signed_in(request, change=True)
        name = " ".join(name.split())
        if not name:
            raise bad_request("invalid_key_name", "Give the key a name, such as the program that will use it.")
        if len(name) > MAX_KEY_NAME or any(unicodedata.category(c).startswith("C") for c in name):
            raise bad_request("invalid_key_name", f"A key name has at most {MAX_KEY_NAME} printable characters.")
        key = generate_key()
        stored = await self._db(self.storage.add_api_key, account.id, key, name)
        log.info("dashboard_key_created", account_id=account.id, key_id=stored.id)
        return key, stored

    async def revoke_key(self, request: WebRequest, key_id: int) -> ApiKey:
        _, account = await self._signed_in(request, change=True)
        # Another account's key and no key at all look the same.
        if await self._db(self.storage.get_key, key_id, account.id) is None:
            raise ApiError(404, "key_not_found", "This account has no such key.")
        if await self._db(self.storage.revoke_key, key_id, account.id):
            log.info("dashboard_key_revoked", account_id=account.id, key_id=key_id)
        return await self._db(self.storage.get_key, key_id, account.id)

    async def usage(self, request: WebRequest, today: dt.date | None = None) -> Usage:
        _, account = await self._signed_in(request)
        today = today or utc_now().date()
        first = today - dt.timedelta(days=USAGE_DAYS - 1)
        since = dt.datetime.combine(first, dt.time(), dt.timezone.utc)
        rows = {row.day: row for row in await self._db(self.storage.usage_by_day, account.id, since)}
        days = []
        for offset in range(USAGE_DAYS):
            day = (first + dt.timedelta(days=offset)).isoformat()
            row = rows.get(day)
            days.append((day, row.images if row else 0, row.credits if row else Decimal(0)))
        calls = await self._db(self.storage.recent_calls, account.id, RECENT_CALLS)
        return Usage(days, calls)

    # -- "Try it" ------------------------------------------------------------------------------

    async def try_photo(self, request: WebRequest, content_type: str, body: bytes, request_id: str) -> TryResult:
        """The API's removal for the signed-in account. size=preview (the default here) costs
        nothing: no credit and no free call, within the per-IP preview limit; paid sizes are
        charged like an API call (the ledger row has no key). Within the account's rate limit."""
        _, account = await self._signed_in(request, change=True)
        removal = self.removal
        if removal is None:
            raise ApiError(503, "not_ready", "The model is still loading; try again shortly.", headers=[("retry-after", "5")])
        fields = parse_body(content_type, body)
        fields.setdefault("size", "preview")
        wanted = params.parse_fields(fields, self.settings.max_file_bytes)
        if wanted.image_url is not None or wanted.bg_image_url is not None:
            raise bad_request("upload_required", "Try it takes uploaded files; image_url and bg_image_url are for the API.")
        info = await removal.probe(wanted.image)
        decision = await removal.limits.for_key(
            f"dashboard:{account.id}", cost_for_pixels(info.width, info.height), account.rate_limit_per_minute
        )
        if not decision.allowed:
            raise rate_limited(decision)
        if wanted.size == "preview":
            by_ip = await removal.limits.for_preview_ip(request.client_ip)
            if not by_ip.allowed:
                raise preview_ip_limited(by_ip)
            result = await removal.run_engine(wanted.image, self._options(wanted, "preview", account.id), info)
            charged = Decimal(0)
        else:
            async with paid_call(removal.reservations, account.id, None, request_id, wanted.size) as paid:
                result = await removal.run_engine(wanted.image, self._options(wanted, paid.size, account.id), info)
            charged = paid.charged
        headers = (
            ("x-width", str(result.width)),
            ("x-height", str(result.height)),
            ("x-credits-charged", format_credits(charged)),
            ("x-type", result.foreground_type),
        )
        log.info("dashboard_tried", account_id=account.id, size=wanted.size, width=result.width, height=result.height)
        return TryResult(result.data, result.content_type, headers)

    @staticmethod
    def _options(wanted: params.RemovalRequest, size: str, account_id: int):
        return dataclasses.replace(
            wanted.options, max_output_pixels=params.SIZE_PIXELS[size], cache_scope=str(account_id)
        )


# -- the operator's side (clearbg-admin, the development account) ------------------------------


def create_user(
    storage: Storage, email: str, *, account_id: int | None = None, password: str | None = None,
    free_calls: int = 0,
) -> User:
    """A user for the operator's tool and the development account: of `account_id`, or of a new
    account named after the e-mail address. With no password, the user signs in with a link."""
    email = normalize_email(email)
    if len(email) > MAX_EMAIL or not _EMAIL.fullmatch(email):
        raise ValueError(f"not an e-mail address: {email[:60]!r}")
    hashed = None
    if password is not None:
        problem = passwords.check_new_password(password)
        if problem:
            raise ValueError(problem)
        hashed = passwords.hash_password(password)
    return storage.create_user(email, hashed, account_id=account_id, account_name=email, free_calls=free_calls)


def sign_in_link(storage: Storage, user: User, base_url: str) -> str:
    """A one-time link that signs `user` in (valid 24 hours). The token rides in the fragment,
    which browsers never send, so it reaches no access log; the page posts it."""
    token = new_token()
    storage.create_sign_in_link(user.id, token, utc_now() + SIGN_IN_LINK_LIFETIME)
    return f"{base_url.rstrip('/')}/dashboard/#sign-in-link={token}"

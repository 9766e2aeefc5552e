"""What a browser call carries (cookies, CSRF token, origin) and the cookies it gets back.

Cookies: the session (random, kept server-side as a hash) and, before sign-in, a CSRF cookie
(double submit). Both HttpOnly, SameSite=Strict, Path=/; over TLS also Secure with the
`__Host-` prefix (no Domain, so a sibling host cannot plant one). The CSRF token of a signed-in
browser is an HMAC of its session token, so the server stores nothing more for it.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import secrets
from collections.abc import Iterable
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from service.errors import ApiError

SESSION_COOKIE = "clearbg_session"
CSRF_COOKIE = "clearbg_csrf"
SESSION_LIFETIME = dt.timedelta(days=7)
# A cookie value longer than this is no token of ours (they are 43 characters).
MAX_TOKEN_LENGTH = 128
# Browsers send Sec-Fetch-Site on every request; only the dashboard's own pages may change things.
ALLOWED_FETCH_SITES = frozenset({"same-origin", "none"})


def new_token() -> str:
    return secrets.token_urlsafe(32)


def csrf_for_session(session_token: str) -> str:
    return hmac.new(session_token.encode(), b"clearbg-dashboard-csrf", hashlib.sha256).hexdigest()


def parse_cookies(headers: Iterable[str]) -> dict[str, str]:
    """Cookie headers (several under HTTP/2) -> name: value; the first of a repeated name wins,
    as browsers send the most specific cookie first."""
    cookies: dict[str, str] = {}
    for header in headers:
        for part in header.split(";"):
            name, sep, value = part.strip().partition("=")
            if sep and name and len(value) <= MAX_TOKEN_LENGTH:
                cookies.setdefault(name, value.strip().strip('"'))
    return cookies


@dataclass(frozen=True)
class WebRequest:
    cookies: dict[str, str] = field(default_factory=dict)
    csrf_token: str = ""  # the x-csrf-token header
    origin: str | None = None
    fetch_site: str | None = None  # Sec-Fetch-Site
    host: str | None = None  # the Host the browser asked (Envoy passes :authority as x-clearbg-host)
    secure: bool = False  # TLS at Envoy, or CLEARBG_SECURE_COOKIES behind a TLS proxy
    client_ip: str = "unknown"

    def cookie_name(self, base: str) -> str:
        return f"__Host-{base}" if self.secure else base

    @property
    def session_token(self) -> str | None:
        return self.cookies.get(self.cookie_name(SESSION_COOKIE)) or None

    @property
    def csrf_cookie(self) -> str | None:
        return self.cookies.get(self.cookie_name(CSRF_COOKIE)) or None

    def set_cookie(self, base: str, value: str, max_age: dt.timedelta | None = None) -> str:
        parts = [f"{self.cookie_name(base)}={value}", "Path=/", "HttpOnly", "SameSite=Strict"]
        if max_age is not None:
            parts.append(f"Max-Age={int(max_age.total_seconds())}")
        if self.secure:
            parts.append("Secure")
        return "; ".join(parts)

    def clear_cookie(self, base: str) -> str:
        return self.set_cookie(base, "", dt.timedelta(0))

    def check_same_origin(self) -> None:
        """Refuses a change asked by a page of another site or origin (a cross-site form post,
        say): the browser says so in Sec-Fetch-Site and Origin, which pages cannot forge."""
        if self.fetch_site is not None and self.fetch_site.lower() not in ALLOWED_FETCH_SITES:
            raise cross_site()
        if self.origin is not None:
            try:
                netloc = urlsplit(self.origin).netloc
            except ValueError:  # "http://[x": urllib refuses it (found by fuzzing); no origin of ours
                raise cross_site() from None
            if self.origin == "null" or not self.host or netloc.lower() != self.host.lower():
                raise cross_site()

    def check_csrf(self, expected: str | None) -> None:
        """Every change: same origin, and the x-csrf-token header equal to `expected` (the
        session's token, or the pre-session CSRF cookie)."""
        self.check_same_origin()
        if not expected or not self.csrf_token or not hmac.compare_digest(self.csrf_token.encode(), expected.encode()):
            raise ApiError(
                403, "invalid_csrf_token",
                "This request lacks the dashboard's CSRF token: reload the page and try again.",
            )


def cross_site() -> ApiError:
    return ApiError(403, "cross_site_request", "Changes are accepted only from the dashboard's own pages.")

"""The dashboard's use cases (service/dashboard) on a real SQLite database with the fake engine:
sign-up and sign-in, session cookies and their rotation, CSRF, failed sign-in limits, tenant
isolation, keys, usage from the ledger, "Try it", and the operator's users and links."""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import io
from decimal import Decimal

import pytest

from service.bootstrap import DEV_USER_EMAIL, ensure_dev_account
from service.dashboard import passwords
from service.dashboard.service import (
    FAILURES_PER_EMAIL,
    FAILURES_PER_IP,
    USAGE_DAYS,
    Dashboard,
    create_user,
    sign_in_link,
)
from service.dashboard.web import CSRF_COOKIE, SESSION_COOKIE, WebRequest, csrf_for_session, parse_cookies
from service.errors import ApiError
from service.removal import RemovalService
from service_fakes import DEV_KEY, FakeEngine, png_bytes

PASSWORD = "correct horse battery"


def run(coro):
    return asyncio.run(coro)


def api_error(coro) -> ApiError:
    with pytest.raises(ApiError) as caught:
        run(coro)
    return caught.value


class Browser:
    """One browser: keeps the cookies answers set and sends them, with the CSRF token it was
    given, from its own client IP."""

    def __init__(self, ip: str = "203.0.113.7", secure: bool = False):
        self.cookies: dict[str, str] = {}
        self.csrf = ""
        self.ip = ip
        self.secure = secure

    def request(self, **overrides) -> WebRequest:
        base = WebRequest(
            cookies=dict(self.cookies), csrf_token=self.csrf, host="dash.test", secure=self.secure, client_ip=self.ip
        )
        return dataclasses.replace(base, **overrides)

    def keep(self, answer):
        for header in answer.cookies:
            pair, *attributes = header.split("; ")
            name, _, value = pair.partition("=")
            if "Max-Age=0" in attributes:
                self.cookies.pop(name, None)
            else:
                self.cookies[name] = value
        value = answer.value
        if value is not None and hasattr(value, "csrf_token"):
            self.csrf = value.csrf_token
        return value


@pytest.fixture
def dashboard(storage, settings):
    removal = RemovalService(storage, FakeEngine(), settings)
    yield Dashboard(storage, dataclasses.replace(settings, sign_up_open=True), removal)
    removal.shutdown()


def signed_up(dashboard, email="ana@example.com", browser=None) -> Browser:
    browser = browser or Browser()
    browser.keep(run(dashboard.session(browser.request())))
    browser.keep(run(dashboard.sign_up(browser.request(), email, PASSWORD)))
    return browser


def test_sign_up_needs_the_pre_session_csrf_token_and_signs_in(dashboard, storage):
    browser = Browser()
    assert api_error(dashboard.sign_up(browser.request(), "ana@example.com", PASSWORD)).status == 403
    view = browser.keep(run(dashboard.session(browser.request())))
    assert not view.signed_in and view.sign_up_open and browser.cookies[CSRF_COOKIE] == view.csrf_token
    assert api_error(dashboard.sign_up(browser.request(csrf_token="forged"), "ana@example.com", PASSWORD)).status == 403
    answer = run(dashboard.sign_up(browser.request(), "  Ana@Example.COM ", PASSWORD))
    session_cookie = next(c for c in answer.cookies if c.startswith(SESSION_COOKIE + "="))
    assert {"HttpOnly", "SameSite=Strict", "Path=/", "Max-Age=604800"} <= set(session_cookie.split("; "))
    assert "Secure" not in session_cookie
    assert any(c.startswith(CSRF_COOKIE + "=;") and "Max-Age=0" in c for c in answer.cookies)
    browser.keep(answer)
    user = storage.find_user("ana@example.com")
    assert user is not None and user.password_hash.startswith("$argon2id$") and PASSWORD not in user.password_hash
    account = storage.get_account(user.account_id)
    assert account.total == 0 and account.free_calls_allowance == 50
    view = run(dashboard.session(browser.request())).value
    assert view.signed_in and view.user.email == "ana@example.com"
    assert view.csrf_token == csrf_for_session(browser.cookies[SESSION_COOKIE])


def test_over_tls_cookies_are_secure_and_host_prefixed(dashboard):
    browser = signed_up(dashboard, browser=Browser(secure=True))
    assert set(browser.cookies) == {"__Host-" + SESSION_COOKIE}
    answer = run(dashboard.sign_in(browser.request(), "ana@example.com", PASSWORD))
    assert all("Secure" in c.split("; ") for c in answer.cookies)


def test_sign_up_refusals(dashboard, storage, settings):
    signed_up(dashboard)
    browser = Browser()
    browser.keep(run(dashboard.session(browser.request())))
    assert api_error(dashboard.sign_up(browser.request(), "ANA@example.com", PASSWORD)).code == "email_taken"
    assert api_error(dashboard.sign_up(browser.request(), "not-an-address", PASSWORD)).code == "invalid_email"
    assert api_error(dashboard.sign_up(browser.request(), "bo@example.com", "short")).code == "invalid_password"
    closed = Dashboard(storage, dataclasses.replace(settings, sign_up_open=False))
    error = api_error(closed.sign_up(browser.request(), "bo@example.com", PASSWORD))
    assert (error.status, error.code) == (403, "sign_up_closed")
    assert storage.find_user("bo@example.com") is None


def test_sign_in_rotates_the_session_and_sign_out_ends_it(dashboard, storage):
    browser = signed_up(dashboard)
    first = browser.cookies[SESSION_COOKIE]
    browser.keep(run(dashboard.sign_in(browser.request(), "ana@example.com", PASSWORD)))
    second = browser.cookies[SESSION_COOKIE]
    assert second != first
    assert storage.find_session(first) is None and storage.find_session(second) is not None
    assert api_error(dashboard.sign_out(browser.request(csrf_token="wrong"))).status == 403
    browser.keep(run(dashboard.sign_out(browser.request())))
    assert SESSION_COOKIE not in browser.cookies
    assert storage.find_session(second) is None
    replayed = Browser()
    replayed.cookies[SESSION_COOKIE] = second
    assert api_error(dashboard.overview(replayed.request())).status == 401


def test_wrong_passwords_are_limited_per_address_with_retry_after(dashboard):
    signed_up(dashboard)
    browser = Browser(ip="198.51.100.1")
    browser.keep(run(dashboard.session(browser.request())))
    for _ in range(FAILURES_PER_EMAIL):
        error = api_error(dashboard.sign_in(browser.request(), "ana@example.com", "wrong password"))
        assert (error.status, error.code) == (401, "invalid_credentials")
    limited = api_error(dashboard.sign_in(browser.request(), "ana@example.com", PASSWORD))
    assert limited.status == 429
    retry_after = int(dict(limited.headers)["retry-after"])
    assert 0 < retry_after <= 15 * 60
    # The limit is the address's: another IP is refused too, another address is not.
    elsewhere = Browser(ip="192.0.2.9")
    elsewhere.keep(run(dashboard.session(elsewhere.request())))
    assert api_error(dashboard.sign_in(elsewhere.request(), "ana@example.com", PASSWORD)).status == 429
    assert api_error(dashboard.sign_in(elsewhere.request(), "nobody@example.com", PASSWORD)).status == 401


def test_failures_are_limited_per_ip_across_addresses_and_unknown_ones_count(dashboard):
    signed_up(dashboard)
    browser = Browser(ip="198.51.100.2")
    browser.keep(run(dashboard.session(browser.request())))
    for number in range(FAILURES_PER_IP):
        # Unknown addresses fail like wrong passwords: the answer does not tell who exists.
        error = api_error(dashboard.sign_in(browser.request(), f"guess{number}@example.com", "wrong password"))
        assert error.code == "invalid_credentials"
    assert api_error(dashboard.sign_in(browser.request(), "ana@example.com", PASSWORD)).status == 429
    other_ip = Browser(ip="198.51.100.3")
    other_ip.keep(run(dashboard.session(other_ip.request())))
    other_ip.keep(run(dashboard.sign_in(other_ip.request(), "ana@example.com", PASSWORD)))
    assert SESSION_COOKIE in other_ip.cookies


def test_password_change_ends_every_other_session(dashboard, storage):
    here = signed_up(dashboard)
    there = Browser()
    there.keep(run(dashboard.session(there.request())))
    there.keep(run(dashboard.sign_in(there.request(), "ana@example.com", PASSWORD)))
    assert api_error(dashboard.change_password(here.request(), "not it", "a new password")).status == 403
    assert api_error(dashboard.change_password(here.request(csrf_token=""), PASSWORD, "a new password")).status == 403
    here.keep(run(dashboard.change_password(here.request(), PASSWORD, "a new password")))
    assert run(dashboard.overview(here.request())).id == storage.find_user("ana@example.com").account_id
    assert api_error(dashboard.overview(there.request())).status == 401
    assert api_error(dashboard.sign_in(there.request(), "ana@example.com", PASSWORD)).status in (401, 403)


@pytest.mark.parametrize(
    "overrides, code",
    [
        ({"csrf_token": ""}, "invalid_csrf_token"),
        ({"csrf_token": "0" * 64}, "invalid_csrf_token"),
        ({"fetch_site": "cross-site"}, "cross_site_request"),
        ({"fetch_site": "same-site"}, "cross_site_request"),
        ({"origin": "http://evil.test"}, "cross_site_request"),
        ({"origin": "null"}, "cross_site_request"),
        # Found by fuzzing (fuzz/targets.py, browser_headers): urllib's ValueError became a 500.
        ({"origin": "http://[dash.test"}, "cross_site_request"),
    ],
)
def test_every_change_needs_the_csrf_token_from_the_same_origin(dashboard, storage, overrides, code):
    browser = signed_up(dashboard)
    error = api_error(dashboard.create_key(browser.request(**overrides), "k"))
    assert (error.status, error.code) == (403, code)
    account_id = storage.find_user("ana@example.com").account_id
    assert storage.list_keys(account_id) == []
    run(dashboard.create_key(browser.request(origin="http://dash.test", fetch_site="same-origin"), "k"))
    assert len(storage.list_keys(account_id)) == 1


def test_keys_are_named_shown_once_and_kept_to_their_account(dashboard, storage):
    ana = signed_up(dashboard)
    bo = signed_up(dashboard, "bo@example.com")
    clear, stored = run(dashboard.create_key(ana.request(), "  build   server "))
    assert stored.name == "build server" and clear.startswith(stored.prefix)
    assert storage.find_key(clear)[1].id == stored.id
    for bad in ("", "   ", "x" * 101, "bell\x07", "nul\x00"):
        assert api_error(dashboard.create_key(ana.request(), bad)).code == "invalid_key_name"
    script = "<script>alert(1)</script>"
    run(dashboard.create_key(ana.request(), script))
    assert [k.name for k in run(dashboard.list_keys(ana.request()))] == ["build server", script]
    assert run(dashboard.list_keys(bo.request())) == []
    error = api_error(dashboard.revoke_key(bo.request(), stored.id))
    assert (error.status, error.code) == (404, "key_not_found")
    assert storage.find_key(clear) is not None
    assert api_error(dashboard.revoke_key(ana.request(), 999_999)).status == 404
    revoked = run(dashboard.revoke_key(ana.request(), stored.id))
    assert revoked.revoked_at and storage.find_key(clear) is None
    assert run(dashboard.revoke_key(ana.request(), stored.id)).revoked_at == revoked.revoked_at


def test_usage_counts_delivered_calls_per_day_and_lists_the_latest(dashboard, storage):
    browser = signed_up(dashboard)
    account_id = storage.find_user("ana@example.com").account_id
    storage.add_credits(account_id, "top-up", payg=Decimal(10))
    clear, key = run(dashboard.create_key(browser.request(), "ci"))
    storage.reserve(account_id, key.id, "r1", Decimal(1), size="hd")
    failed = storage.reserve(account_id, key.id, "r2", Decimal(1), size="full")
    storage.refund(failed.entry_id, "r2")
    storage.reserve_free_call(account_id, key.id, "r3")
    usage = run(dashboard.usage(browser.request()))
    assert len(usage.days) == USAGE_DAYS and usage.days[-1][0] == dt.datetime.now(dt.timezone.utc).date().isoformat()
    assert usage.days[-1][1:] == (2, Decimal(1))
    assert all(images == 0 for _, images, _ in usage.days[:-1])
    assert [(c.size, c.amount, c.refunded, c.key_name) for c in usage.calls] == [
        ("preview", 0, False, "ci"), ("full", 1, True, "ci"), ("hd", 1, False, "ci"),
    ]
    assert run(dashboard.list_keys(browser.request()))[0].last_used_at
    other = signed_up(dashboard, "bo@example.com")
    assert run(dashboard.usage(other.request())).calls == []


def test_try_photo_preview_is_free_and_paid_sizes_are_charged_without_a_key(dashboard, storage):
    browser = signed_up(dashboard)
    account_id = storage.find_user("ana@example.com").account_id
    body, content_type = multipart({"image_file": png_bytes(900, 600), "size": "preview", "format": "png"})
    result = run(dashboard.try_photo(browser.request(), content_type, body, "t1"))
    headers = dict(result.headers)
    assert result.content_type == "image/png" and headers["x-credits-charged"] == "0"
    assert int(headers["x-width"]) * int(headers["x-height"]) <= 250_000
    assert storage.ledger(account_id) == [] and storage.get_account(account_id).free_calls_left() == 50
    assert api_error(dashboard.try_photo(browser.request(), content_type, body.replace(b"preview", b"hd"), "t2")).status == 402
    storage.add_credits(account_id, "top-up", payg=Decimal(2))
    paid = run(dashboard.try_photo(browser.request(), content_type, body.replace(b"preview", b"medium"), "t3"))
    assert dict(paid.headers)["x-credits-charged"] == "1"
    charge = storage.ledger(account_id)[-1]
    assert (charge.kind, charge.key_id, charge.request_id) == ("charge", None, "t3")
    assert api_error(dashboard.try_photo(browser.request(csrf_token=""), content_type, body, "t4")).status == 403
    url_body, url_type = multipart({"image_url": "https://example.com/a.jpg"})
    assert api_error(dashboard.try_photo(browser.request(), url_type, url_body, "t5")).code == "upload_required"


def test_try_photo_keeps_to_the_account_rate_limit(dashboard, storage):
    browser = signed_up(dashboard)
    account_id = storage.find_user("ana@example.com").account_id
    storage.update_account(account_id, rate_limit_per_minute=1)
    body, content_type = multipart({"image_file": png_bytes(200, 200)})
    dashboard_run = asyncio.new_event_loop()
    try:
        dashboard_run.run_until_complete(dashboard.try_photo(browser.request(), content_type, body, "a"))
        with pytest.raises(ApiError) as caught:
            dashboard_run.run_until_complete(dashboard.try_photo(browser.request(), content_type, body, "b"))
    finally:
        dashboard_run.close()
    assert caught.value.status == 429 and "retry-after" in dict(caught.value.headers)


def test_operator_sign_in_links_work_once_and_expire(dashboard, storage):
    account = storage.create_account("Acme", free_calls=5)
    user = create_user(storage, "Cy@Example.com", account_id=account.id)
    assert user.email == "cy@example.com" and user.password_hash is None
    link = sign_in_link(storage, user, "https://bg.example.com/")
    assert link.startswith("https://bg.example.com/dashboard/#sign-in-link=")
    token = link.rsplit("=", 1)[1]
    browser = Browser()
    browser.keep(run(dashboard.session(browser.request())))
    # No password yet: signing in with any password fails.
    assert api_error(dashboard.sign_in(browser.request(), "cy@example.com", "")).status == 400
    assert api_error(dashboard.sign_in(browser.request(), "cy@example.com", "whatever it is")).status == 401
    signed = browser.keep(run(dashboard.redeem_sign_in_link(browser.request(), token)))
    assert signed.user.id == user.id and signed.account.id == account.id
    browser.keep(run(dashboard.change_password(browser.request(), "", "chosen password")))
    again = Browser()
    again.keep(run(dashboard.session(again.request())))
    assert api_error(dashboard.redeem_sign_in_link(again.request(), token)).code == "invalid_sign_in_link"
    storage.create_sign_in_link(user.id, "expired-token", dt.datetime.now(dt.timezone.utc) - dt.timedelta(seconds=1))
    assert api_error(dashboard.redeem_sign_in_link(again.request(), "expired-token")).status == 401
    again.keep(run(dashboard.sign_in(again.request(), "cy@example.com", "chosen password")))
    assert SESSION_COOKIE in again.cookies


def test_development_user_is_made_and_printed_once(storage):
    out = io.StringIO()
    ensure_dev_account(storage, DEV_KEY, out)
    printed = out.getvalue()
    assert f"Development API key: {DEV_KEY}" in printed
    line = next(line for line in printed.splitlines() if line.startswith("Development dashboard user:"))
    email, password = line.split()[3], line.split()[5]
    assert email == DEV_USER_EMAIL
    user = storage.find_user(email)
    assert passwords.verify_password(user.password_hash, password)
    assert user.account_id == storage.find_key(DEV_KEY)[0].id
    again = io.StringIO()
    ensure_dev_account(storage, DEV_KEY, again)
    assert again.getvalue() == "" and storage.count_users() == 1


def test_passwords_and_cookie_parsing():
    hashed = passwords.hash_password(PASSWORD)
    assert hashed.startswith("$argon2id$v=19$m=19456,t=2,p=1$")
    assert passwords.verify_password(hashed, PASSWORD)
    assert not passwords.verify_password(hashed, PASSWORD + "x")
    assert not passwords.verify_password(None, PASSWORD)
    assert not passwords.verify_password("not a hash", PASSWORD)
    assert not passwords.verify_password(hashed, "x" * 10_000)
    assert parse_cookies(["a=1; b=2", "a=3; junk; c=\"4\""]) == {"a": "1", "b": "2", "c": "4"}
    assert parse_cookies(["big=" + "x" * 500]) == {}


def multipart(fields: dict) -> tuple[bytes, str]:
    boundary = "----clearbgtest"
    parts = []
    for name, value in fields.items():
        if isinstance(value, bytes):
            parts.append(
                f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"; filename="p.png"\r\n'
                f"Content-Type: image/png\r\n\r\n".encode() + value + b"\r\n"
            )
        else:
            parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'.encode())
    return b"".join(parts) + f"--{boundary}--\r\n".encode(), f"multipart/form-data; boundary={boundary}"


def test_operator_cli_creates_users_with_a_link(tmp_path, capsys):
    from service.admin.cli import main

    url = f"sqlite:///{tmp_path / 'cli.db'}"
    assert main(["--database-url", url, "create-account", "Acme"]) == 0
    assert main(["--database-url", url, "create-user", "Ana@Example.com", "--account", "1", "--base-url", "https://bg.test"]) == 0
    printed = capsys.readouterr().out
    assert "user ana@example.com (account 1)" in printed
    assert "One-time sign-in link (valid 24 hours): https://bg.test/dashboard/#sign-in-link=" in printed
    assert main(["--database-url", url, "create-user", "ana@example.com"]) == 1
    assert "exists already" in capsys.readouterr().err
    assert main(["--database-url", url, "sign-in-link", "nobody@example.com"]) == 1
    assert main(["--database-url", url, "--json", "sign-in-link", "ana@example.com"]) == 0
    assert '"sign_in_link": "http://127.0.0.1:8080/dashboard/#sign-in-link=' in capsys.readouterr().out


class FakeContext:
    def __init__(self, metadata):
        self.metadata = metadata

    def invocation_metadata(self):
        return self.metadata

    def peer(self):
        return "ipv4:10.1.2.3:5555"


def test_servicer_reads_the_browser_from_the_gateway_metadata():
    from service.dashboard.servicer import web_request

    metadata = [
        ("cookie", f"{SESSION_COOKIE}=abc; other=1"), ("cookie", f"{CSRF_COOKIE}=def"),
        ("x-csrf-token", " tok "), ("origin", "http://h.test"), ("sec-fetch-site", "same-origin"),
        ("x-clearbg-host", "h.test"), ("x-clearbg-tls", "-"), ("x-clearbg-client-ip", "198.51.100.4"),
    ]
    request = web_request(FakeContext(metadata), dict(metadata), secure_cookies=False)
    assert (request.session_token, request.csrf_cookie, request.csrf_token) == ("abc", "def", "tok")
    assert (request.secure, request.client_ip, request.host) == (False, "198.51.100.4", "h.test")
    request.check_same_origin()
    tls = web_request(FakeContext([("x-clearbg-tls", "TLSv1.3")]), {"x-clearbg-tls": "TLSv1.3"}, secure_cookies=False)
    assert tls.secure and tls.client_ip == "10.1.2.3"
    assert web_request(FakeContext([]), {}, secure_cookies=True).secure


def test_a_database_from_before_the_dashboard_gets_the_development_user_once(storage):
    storage.create_first_account("development", DEV_KEY, subscription=Decimal(45))
    out = io.StringIO()
    ensure_dev_account(storage, DEV_KEY, out)
    assert out.getvalue().startswith(f"Development dashboard user: {DEV_USER_EMAIL}  password: ")
    again = io.StringIO()
    ensure_dev_account(storage, DEV_KEY, again)
    assert again.getvalue() == "" and storage.count_users() == 1


def test_another_first_account_gets_no_development_user(storage):
    storage.create_account("Acme")
    ensure_dev_account(storage, None, io.StringIO())
    assert storage.count_users() == 0

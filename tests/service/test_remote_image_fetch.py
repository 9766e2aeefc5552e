"""image_url / bg_image_url downloads against servers started here on 127.0.0.1: the hostile
corpus, redirects into forbidden addresses, pinning, size and time caps, TLS, concurrency,
and the removal use case around them (with the fake engine)."""

from __future__ import annotations

import asyncio
import socket
import ssl
import time
from collections.abc import Callable, Iterator

import pytest

from service.config import MIB, Settings
from service.errors import ApiError
from service.fetching.download import system_resolver
from service.fetching.remote_images import RemoteImages
from service.removal import RemovalService
from service_fakes import DEV_KEY, png_bytes
from remote_fixtures import (
    HOSTILE,
    LocalServer,
    body,
    declared_length,
    drip,
    photo_bytes,
    raw,
    redirect,
    self_signed,
    status,
)

LOCAL = ("127.0.0.1",)


@pytest.fixture
def images() -> Iterator[Callable[..., RemoteImages]]:
    """Makes RemoteImages from Settings fields (plus resolver / tls); shuts them all down."""
    made: list[RemoteImages] = []

    def make(resolver=system_resolver, tls=None, **fields) -> RemoteImages:
        made.append(RemoteImages(Settings(**fields), resolver=resolver, tls=tls))
        return made[-1]

    yield make
    for remote in made:
        remote.shutdown()


@pytest.fixture
def photo_server() -> Iterator[LocalServer]:
    with LocalServer({"/photo.jpg": body(photo_bytes())}) as server:
        yield server


def fetch(remote: RemoteImages, url: str, field: str = "image_url") -> bytes:
    return asyncio.run(remote.fetch(field, url))


def refused(remote: RemoteImages, url: str, field: str = "image_url") -> ApiError:
    with pytest.raises(ApiError) as caught:
        fetch(remote, url, field)
    return caught.value


def download_failure(remote: RemoteImages, url: str, field: str = "image_url") -> str:
    """The reason of a 400 failed_image_download (fails the test on any other answer)."""
    error = refused(remote, url, field)
    assert (error.status, error.code) == (400, "failed_image_download"), error.body()
    prefix = f"Could not download {field}: "
    assert error.detail.startswith(prefix) and error.detail.endswith(".")
    return error.detail[len(prefix) : -1]


def test_an_allowed_local_server_serves_the_photo_with_its_own_host_header(images, photo_server):
    remote = images(url_fetch_allow_hosts=LOCAL)
    assert fetch(remote, photo_server.url("/photo.jpg")) == photo_bytes()
    assert photo_server.seen == [("/photo.jpg", f"127.0.0.1:{photo_server.port}")]


def test_without_the_allow_list_the_same_server_is_never_contacted(images, photo_server):
    reason = download_failure(images(), photo_server.url("/photo.jpg"))
    assert reason == "address 127.0.0.1 is not allowed (loopback)"
    assert photo_server.seen == []


@pytest.mark.parametrize("allow", [(), LOCAL], ids=["no-allow-list", "allow-127.0.0.1"])
@pytest.mark.parametrize("url, why", HOSTILE, ids=[url for url, _ in HOSTILE])
def test_hostile_urls_are_refused_with_a_reason(images, allow, url, why):
    assert why in download_failure(images(url_fetch_allow_hosts=allow), url)


def test_the_corpus_is_large_and_varied():
    assert len(HOSTILE) >= 20
    schemes = {url.split(":", 1)[0] for url, _ in HOSTILE}
    assert {"http", "https", "file", "ftp", "gopher", "data"} <= schemes


@pytest.mark.parametrize(
    "location, why",
    [
        ("http://localhost:{port}/photo.jpg", "resolves to an address that is not allowed (loopback)"),
        ("http://169.254.169.254/latest/meta-data/", "address 169.254.169.254 is not allowed (cloud metadata service)"),
        ("http://[::1]:{port}/photo.jpg", "address ::1 is not allowed (loopback)"),
        ("http://[::ffff:127.0.0.1]:{port}/photo.jpg", "(that is 127.0.0.1) is not allowed (loopback)"),
        ("http://2130706433:{port}/photo.jpg", "numeric address in an unusual spelling"),
        ("http://10.0.0.1/", "address 10.0.0.1 is not allowed (private network)"),
        ("file:///etc/passwd", "only http and https URLs can be fetched"),
        ("gopher://127.0.0.1:{port}/_x", "only http and https URLs can be fetched"),
    ],
)
def test_every_redirect_is_checked_again(images, photo_server, location, why):
    photo_server.routes["/go"] = redirect(location.format(port=photo_server.port))
    reason = download_failure(images(url_fetch_allow_hosts=LOCAL), photo_server.url("/go"))
    assert reason.startswith("after a redirect: ") and why in reason
    assert [path for path, _ in photo_server.seen] == ["/go"]  # the target itself was never asked


@pytest.mark.parametrize("code", [301, 302, 303, 307, 308])
def test_redirects_within_the_allowed_host_are_followed(images, photo_server, code):
    photo_server.routes["/moved"] = redirect("/photo.jpg", code)
    assert fetch(images(url_fetch_allow_hosts=LOCAL), photo_server.url("/moved")) == photo_bytes()


def test_five_redirects_are_followed_and_a_sixth_is_refused(images, photo_server):
    for n in range(1, 7):
        photo_server.routes[f"/hop/{n}"] = redirect(f"/hop/{n - 1}")
    photo_server.routes["/hop/0"] = body(photo_bytes())
    remote = images(url_fetch_allow_hosts=LOCAL)
    assert fetch(remote, photo_server.url("/hop/5")) == photo_bytes()
    assert download_failure(remote, photo_server.url("/hop/6")) == "more than 5 redirects"


def test_a_redirect_loop_ends_after_five_redirects(images, photo_server):
    photo_server.routes["/loop"] = redirect("/loop?again")
    assert download_failure(images(url_fetch_allow_hosts=LOCAL), photo_server.url("/loop")) == "more than 5 redirects"
    assert len(photo_server.seen) == 6


@pytest.mark.parametrize("code", [404, 403, 500])
def test_an_error_status_is_named_in_the_reason(images, photo_server, code):
    photo_server.routes["/x"] = status(code)
    reason = download_failure(images(url_fetch_allow_hosts=LOCAL), photo_server.url("/x?token=secret"))
    assert reason == f"http://127.0.0.1:{photo_server.port} answered HTTP {code}"


def test_a_redirect_without_location_is_refused(images, photo_server):
    photo_server.routes["/x"] = status(302)
    assert "empty Location" in download_failure(images(url_fetch_allow_hosts=LOCAL), photo_server.url("/x"))


def test_an_empty_body_is_refused(images, photo_server):
    photo_server.routes["/empty"] = body(b"")
    assert "sent an empty body" in download_failure(images(url_fetch_allow_hosts=LOCAL), photo_server.url("/empty"))


@pytest.mark.parametrize(
    "answer, why",
    [
        (b"SSH-2.0-OpenSSH_9.6\r\n", "sent a malformed or incomplete HTTP response"),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n" + b"\xff" * 10, "ended early"),
        (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", "sent a malformed or incomplete HTTP response"),
    ],
    ids=["not-http", "truncated", "bad-chunk"],
)
def test_broken_answers_are_download_failures(images, photo_server, answer, why):
    photo_server.routes["/broken"] = raw(answer)
    assert why in download_failure(images(url_fetch_allow_hosts=LOCAL), photo_server.url("/broken"))


def test_content_length_over_the_file_cap_is_refused_before_reading(images, photo_server):
    declared = 22 * MIB + 1  # the default file cap is 22 MB
    photo_server.routes["/huge"] = declared_length(declared)
    started = time.monotonic()
    error = refused(images(url_fetch_allow_hosts=LOCAL), photo_server.url("/huge"))
    assert time.monotonic() - started < 3  # the server sends nothing after the header
    assert (error.status, error.code) == (400, "file_too_large")
    assert f"{declared:,} bytes" in error.detail and "22.0 MB" in error.detail


def test_a_streamed_body_over_the_cap_is_cut_while_streaming(images, photo_server):
    limit = 100_000
    photo_server.routes["/exact"] = body(b"\x89" * limit, chunked=True)
    photo_server.routes["/over"] = body(b"\x89" * (limit * 3), chunked=True)
    remote = images(url_fetch_allow_hosts=LOCAL, max_file_bytes=limit)
    assert len(fetch(remote, photo_server.url("/exact"))) == limit
    error = refused(remote, photo_server.url("/over"))
    assert (error.status, error.code) == (400, "file_too_large")
    assert "the download was stopped" in error.detail


@pytest.mark.parametrize(
    "route",
    [drip(), drip(headers_too=True), declared_length(1000)],
    ids=["slow-body", "slow-headers", "silent-after-headers"],
)
def test_the_time_cap_covers_the_whole_download(images, photo_server, route):
    photo_server.routes["/slow"] = route
    started = time.monotonic()
    reason = download_failure(images(url_fetch_allow_hosts=LOCAL, url_fetch_timeout_s=1.0), photo_server.url("/slow"))
    elapsed = time.monotonic() - started
    assert reason == "timed out after 1 s"
    assert 0.9 <= elapsed < 2.5


def test_the_event_loop_keeps_running_during_a_download(images, photo_server):
    photo_server.routes["/slow"] = drip()
    remote = images(url_fetch_allow_hosts=LOCAL, url_fetch_timeout_s=1.0)

    async def scenario() -> int:
        ticks = 0

        async def ticker() -> None:
            nonlocal ticks
            while True:
                await asyncio.sleep(0.05)
                ticks += 1

        task = asyncio.create_task(ticker())
        with pytest.raises(ApiError):
            await remote.fetch("image_url", photo_server.url("/slow"))
        task.cancel()
        return ticks

    assert asyncio.run(scenario()) >= 10


def test_downloads_beyond_the_concurrency_cap_get_503_and_the_slot_comes_back(images, photo_server):
    photo_server.routes["/slow"] = drip()
    remote = images(url_fetch_allow_hosts=LOCAL, url_fetch_timeout_s=1.0, url_fetch_concurrency=1)

    async def scenario() -> ApiError:
        slow = asyncio.create_task(remote.fetch("image_url", photo_server.url("/slow")))
        await asyncio.sleep(0.2)
        with pytest.raises(ApiError) as caught:
            await remote.fetch("image_url", photo_server.url("/photo.jpg"))
        with pytest.raises(ApiError):
            await slow
        return caught.value

    busy = asyncio.run(scenario())
    assert (busy.status, busy.code) == (503, "overloaded") and ("retry-after", "2") in busy.headers
    assert fetch(remote, photo_server.url("/photo.jpg")) == photo_bytes()


class FakeDns:
    """An injected resolver: a table of answers, counting lookups."""

    def __init__(self, table: dict[str, list[str]]):
        self.table = table
        self.lookups: list[str] = []

    def __call__(self, host: str, port: int) -> list[str]:
        self.lookups.append(host)
        if host not in self.table:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return self.table[host]


@pytest.mark.parametrize(
    "answers, why",
    [
        (["169.254.169.254"], "(cloud metadata service)"),
        (["93.184.216.34", "10.0.0.1"], "(private network)"),  # any forbidden answer refuses the name
        (["2606:4700::1111", "fd00:ec2::254"], "(cloud metadata service)"),
        (["::ffff:127.0.0.1"], "(loopback)"),
        (["64:ff9b::a00:1"], "it carries 10.0.0.1: private network"),
        (["0.0.0.0"], "unspecified"),
        (["not-an-address"], "could not be resolved"),
        ([], "could not be resolved"),
    ],
)
def test_names_are_judged_by_every_address_they_resolve_to(images, answers, why):
    dns = FakeDns({"images.example.com": answers})
    reason = download_failure(images(resolver=dns), "http://images.example.com/a.jpg")
    assert why in reason
    for answer in answers:  # the caller learns the category, not our DNS's answers
        assert answer not in reason
    assert dns.lookups == ["images.example.com"]


def test_an_unknown_name_is_a_resolution_failure(images):
    reason = download_failure(images(resolver=FakeDns({})), "http://nowhere.example/a.jpg")
    assert reason == "the host 'nowhere.example' could not be resolved"


def test_the_connection_goes_to_the_checked_address_with_the_urls_host(images, photo_server):
    # `pinned.test` exists only in the injected resolver: the fetch can succeed only by
    # connecting to the address that resolver gave, once per hop, never asking the system.
    photo_server.routes["/moved"] = redirect("/photo.jpg")
    dns = FakeDns({"pinned.test": ["127.0.0.1"]})
    remote = images(resolver=dns, url_fetch_allow_hosts=("pinned.test",))
    assert fetch(remote, f"http://pinned.test:{photo_server.port}/moved") == photo_bytes()
    assert dns.lookups == ["pinned.test", "pinned.test"]
    assert [host for _, host in photo_server.seen] == [f"pinned.test:{photo_server.port}"] * 2


def test_a_name_rebound_between_hops_is_checked_again(images, photo_server):
    photo_server.routes["/moved"] = redirect("/photo.jpg")
    answers = iter([["127.0.0.1"], ["10.0.0.1"]])
    lookups = []

    def rebinding(host: str, port: int) -> list[str]:
        lookups.append(host)
        return next(answers)

    remote = images(resolver=rebinding, url_fetch_allow_hosts=LOCAL)
    # Host allowed by address literal only: the name is checked, and its second answer refused.
    photo_server.routes["/to-name"] = redirect(f"http://rebind.test:{photo_server.port}/photo.jpg")
    answers = iter([["10.0.0.1"]])
    reason = download_failure(remote, photo_server.url("/to-name"))
    assert reason == "after a redirect: the host 'rebind.test' resolves to an address that is not allowed (private network)"
    assert lookups == ["rebind.test"] and [p for p, _ in photo_server.seen] == ["/to-name"]


def test_the_next_checked_address_is_tried_when_one_refuses(images, photo_server):
    dns = FakeDns({"two.test": ["::1", "127.0.0.1"]})  # nothing listens on [::1] at this port
    remote = images(resolver=dns, url_fetch_allow_hosts=("two.test",))
    assert fetch(remote, f"http://two.test:{photo_server.port}/photo.jpg") == photo_bytes()


def test_nothing_listening_is_a_connection_failure(images, photo_server):
    port = photo_server.port
    photo_server.close()
    reason = download_failure(images(url_fetch_allow_hosts=LOCAL), f"http://127.0.0.1:{port}/photo.jpg")
    assert reason == f"could not connect to http://127.0.0.1:{port}"


@pytest.fixture
def tls_server(tmp_path) -> Iterator[tuple[LocalServer, ssl.SSLContext]]:
    """An https server with a certificate for `localhost`, and a client context trusting it."""
    pem = self_signed(tmp_path)
    server_tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_tls.load_cert_chain(pem)
    client_tls = ssl.create_default_context(cafile=str(pem))
    with LocalServer({"/photo.jpg": body(photo_bytes())}, tls=server_tls) as server:
        yield server, client_tls


def test_https_verifies_the_urls_host_while_connecting_to_the_pinned_address(images, tls_server):
    server, client_tls = tls_server
    dns = FakeDns({"localhost": ["127.0.0.1"], "other.test": ["127.0.0.1"]})
    remote = images(resolver=dns, tls=client_tls, url_fetch_allow_hosts=("localhost", "other.test"))
    assert fetch(remote, f"https://localhost:{server.port}/photo.jpg") == photo_bytes()
    assert server.sni == ["localhost"]
    # Same address, another name: the certificate does not name it.
    reason = download_failure(remote, f"https://other.test:{server.port}/photo.jpg")
    assert reason == f"the TLS certificate of https://other.test:{server.port} could not be verified"


def test_https_with_an_untrusted_certificate_is_refused(images, tls_server):
    server, _ = tls_server
    remote = images(resolver=FakeDns({"localhost": ["127.0.0.1"]}), url_fetch_allow_hosts=("localhost",))
    assert "could not be verified" in download_failure(remote, f"https://localhost:{server.port}/photo.jpg")


# --- the removal use case around the download (fake engine) ---


@pytest.fixture
def removal(storage, engine, account) -> Iterator[RemovalService]:
    service = RemovalService(storage, engine, Settings(grpc_port=0, url_fetch_allow_hosts=LOCAL, url_fetch_timeout_s=2.0))
    yield service
    service.shutdown()


def remove(removal: RemovalService, fields: dict):
    return asyncio.run(removal.remove(DEV_KEY, "req-url", fields))


def test_image_url_reaches_the_engine_and_is_charged(removal, engine, storage, account, photo_server):
    delivery = remove(removal, {"image_url": photo_server.url("/photo.jpg"), "size": "small"})
    assert engine.calls[-1][0] == photo_bytes()
    assert dict(delivery.headers)["x-credits-charged"] == "1"


def test_bg_image_url_becomes_the_background(removal, engine, photo_server):
    background = png_bytes(40, 30, (10, 200, 10))
    photo_server.routes["/bg.png"] = body(background, "image/png")
    remove(removal, {"image_file": png_bytes(64, 48), "bg_image_url": photo_server.url("/bg.png")})
    assert engine.calls[-1][1].bg_image == background


def test_a_body_that_is_not_an_image_is_the_usual_invalid_file_type(removal, photo_server):
    photo_server.routes["/page"] = body(b"<html><body>not an image</body></html>", "text/html")
    with pytest.raises(ApiError) as caught:
        remove(removal, {"image_url": photo_server.url("/page")})
    assert (caught.value.status, caught.value.code) == (400, "invalid_file_type")


def test_a_refused_url_charges_nothing_and_the_next_call_works(removal, engine, storage, account, photo_server):
    for field, extra in (("image_url", {}), ("bg_image_url", {"image_file": png_bytes(32, 32)})):
        with pytest.raises(ApiError) as caught:
            remove(removal, {field: "http://169.254.169.254/latest/meta-data/", **extra})
        assert (caught.value.status, caught.value.code) == (400, "failed_image_download")
        assert caught.value.detail.startswith(f"Could not download {field}: ")
    assert engine.calls == [] and storage.ledger(account[0].id) == []
    remove(removal, {"image_url": photo_server.url("/photo.jpg")})
    assert len(engine.calls) == 1

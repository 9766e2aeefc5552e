"""One blocking download of a caller's URL, every hop checked and pinned.

Each hop: parse the URL strictly, resolve the host once, refuse the hop if ANY answer is a
forbidden address, then connect to exactly those checked addresses (never a second lookup,
so DNS rebinding between the check and the connect has nothing to act on) while sending
the URL's own Host header and, for https, SNI and certificate checks for the URL's host.

Why refuse on any forbidden answer instead of connecting to the public ones only: a name
whose answers mix public and internal addresses is the shape of a rebinding or
split-horizon trick, and a refusal is an answer the caller can understand and act on.

Time is capped for the whole download (DNS, connects, redirects, headers and body), not per
socket operation: a watchdog shuts the socket down when the deadline passes, so a server
that drips one byte a second cannot stretch it. DNS itself cannot be interrupted; the async
caller (`remote_images`) stops waiting at the same deadline.
"""

from __future__ import annotations

import http.client
import ipaddress
import socket
import ssl
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from service.errors import shown
from service.logging import get_logger
from service.fetching.addresses import IPAddress, refusal, unwrap
from service.fetching.urls import Target, UrlRefused, parse_url, redirect_target

log = get_logger(__name__)

MAX_REDIRECTS = 5
REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
CHUNK_BYTES = 64 * 1024
REQUEST_HEADERS = {
    "User-Agent": "ClearBG-image-fetch/1.0",
    "Accept": "image/*,*/*;q=0.5",
    "Accept-Encoding": "identity",  # a compressed body would dodge the size cap
    "Connection": "close",
}

# (host, port) -> the addresses it resolves to, as text. Injected in unit tests.
Resolver = Callable[[str, int], Sequence[str]]


def system_resolver(host: str, port: int) -> list[str]:
    return [info[4][0] for info in socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)]


class FetchRefused(Exception):
    """The download failed or was refused; `reason` is safe to show the caller."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


class TooLarge(FetchRefused):
    def __init__(self, size: int | None, limit: int):
        super().__init__("the image is larger than the file size limit")
        self.size = size  # None: the body ran past the limit while streaming
        self.limit = limit


@dataclass(frozen=True)
class FetchPolicy:
    max_bytes: int
    timeout_s: float
    # Hosts exempt from the address checks, exactly as `canonical_host` writes them. For tests
    # and trusted internal sources only; empty by default.
    allow_hosts: frozenset[str] = frozenset()
    max_redirects: int = MAX_REDIRECTS


def canonical_host(text: str) -> str:
    """An allow-list entry written the way `urls.Target.host` is ("[::1]" -> "::1")."""
    host = text.strip().lower()
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    try:
        return str(ipaddress.ip_address(host))
    except ValueError:
        return host


class Downloader:
    def __init__(self, policy: FetchPolicy, resolver: Resolver = system_resolver, tls: ssl.SSLContext | None = None):
        self.policy = policy
        self.resolver = resolver
        self.tls = tls or ssl.create_default_context()

    def download(self, url: str) -> bytes:
        """The body of a 200 answer, at most `policy.max_bytes`; FetchRefused otherwise."""
        return _Attempt(self).run(url)


class _Deadline:
    """The whole download's time budget, with a watchdog that cuts the current socket."""

    def __init__(self, seconds: float):
        self.seconds = seconds
        self.end = time.monotonic() + seconds
        self.expired = False
        self._lock = threading.Lock()
        self._conn: http.client.HTTPConnection | None = None
        self._timer = threading.Timer(seconds, self._expire)
        self._timer.daemon = True
        self._timer.start()

    def remaining(self) -> float:
        left = self.end - time.monotonic()
        if left <= 0 or self.expired:
            raise TimeoutError("download deadline passed")
        return left

    def watch(self, conn: http.client.HTTPConnection) -> None:
        with self._lock:
            self._conn = conn
            if self.expired:
                _cut(conn)

    def _expire(self) -> None:
        with self._lock:
            self.expired = True
            if self._conn is not None:
                _cut(self._conn)

    def cancel(self) -> None:
        self._timer.cancel()


def _cut(conn: http.client.HTTPConnection) -> None:
    """Unblocks a thread reading `conn` (the plain socket call: SSLSocket's own shutdown
    would also drop its TLS state under the reading thread's feet)."""
    sock = conn.sock
    if sock is not None:
        try:
            socket.socket.shutdown(sock, socket.SHUT_RDWR)
        except OSError:
            pass


class _PinnedHTTPConnection(http.client.HTTPConnection):
    """Connects to one already-checked address; Host still names the URL's host."""

    def __init__(self, target: Target, address: IPAddress, timeout: float):
        super().__init__(target.host, target.port, timeout=timeout)
        self.pinned = address

    def connect(self) -> None:
        self.sock = socket.create_connection((str(self.pinned), self.port), self.timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


class _PinnedHTTPSConnection(_PinnedHTTPConnection):
    default_port = 443

    def __init__(self, target: Target, address: IPAddress, timeout: float, tls: ssl.SSLContext):
        super().__init__(target, address, timeout)
        self.tls = tls

    def connect(self) -> None:
        super().connect()
        # SNI and certificate checks for the URL's host, not the pinned address.
        self.sock = self.tls.wrap_socket(self.sock, server_hostname=self.host)


class _Attempt:
    def __init__(self, downloader: Downloader):
        self.policy = downloader.policy
        self.resolver = downloader.resolver
        self.tls = downloader.tls
        self.target: Target | None = None
        self.hop = 0

    def run(self, url: str) -> bytes:
        deadline = _Deadline(self.policy.timeout_s)
        try:
            return self._follow(url, deadline)
        except FetchRefused:
            raise
        except UrlRefused as exc:
            raise FetchRefused(exc.reason) from None
        except Exception as exc:  # noqa: BLE001 - every failure becomes a reason the caller may read
            if deadline.expired or time.monotonic() >= deadline.end or isinstance(exc, TimeoutError):
                raise FetchRefused(f"timed out after {self.policy.timeout_s:g} s") from None
            if not isinstance(exc, (OSError, http.client.HTTPException)):
                log.warning("url_fetch_unexpected_error", exc_info=exc)  # a bug of ours, not the remote's
            raise FetchRefused(self._describe(exc)) from None
        finally:
            deadline.cancel()

    def _redirected(self, reason: str) -> str:
        return f"after a redirect: {reason}" if self.hop else reason

    def _describe(self, exc: Exception) -> str:
        origin = self.target.origin if self.target else "the server"
        if isinstance(exc, ssl.SSLCertVerificationError):
            return f"the TLS certificate of {origin} could not be verified"
        if isinstance(exc, ssl.SSLError):
            return f"the TLS handshake with {origin} failed"
        if isinstance(exc, http.client.HTTPException):
            return f"{origin} sent a malformed or incomplete HTTP response"
        if isinstance(exc, OSError):
            return f"the connection to {origin} failed"
        return f"the download from {origin} failed"

    def _follow(self, url: str, deadline: _Deadline) -> bytes:
        self.target = parse_url(url)
        for hop in range(self.policy.max_redirects + 1):
            self.hop = hop
            addresses = self._addresses(self.target)
            conn, response = self._request(self.target, addresses, deadline)
            try:
                if response.status in REDIRECT_STATUSES:
                    if hop == self.policy.max_redirects:
                        raise FetchRefused(f"more than {self.policy.max_redirects} redirects")
                    try:
                        self.target = redirect_target(self.target, response.getheader("Location") or "")
                    except UrlRefused as exc:
                        raise FetchRefused(f"after a redirect: {exc.reason}") from None
                    continue
                if response.status != 200:
                    raise FetchRefused(self._redirected(f"{self.target.origin} answered HTTP {response.status}"))
                return self._body(conn, response, deadline)
            finally:
                conn.close()
        raise AssertionError("unreachable: the last hop returns or raises")

    def _addresses(self, target: Target) -> list[IPAddress]:
        """The checked addresses this hop may connect to."""
        exempt = target.host in self.policy.allow_hosts
        if target.address is not None:
            address = unwrap(target.address)
            why = None if exempt else refusal(address)
            if why:
                shown_address = target.host if address == target.address else f"{target.host} (that is {address})"
                raise FetchRefused(self._redirected(f"address {shown_address} is not allowed ({why})"))
            return [address]
        try:
            answers = self.resolver(target.host, target.port)
            addresses = list(dict.fromkeys(unwrap(ipaddress.ip_address(a.split("%", 1)[0])) for a in answers))
        except (OSError, UnicodeError, ValueError):
            addresses = []
        if not addresses:
            raise FetchRefused(self._redirected(f"the host {shown(target.host)} could not be resolved"))
        if not exempt:
            for address in addresses:
                why = refusal(address)
                if why:
                    # The address itself is left out: it would tell the caller our internal DNS.
                    reason = f"the host {shown(target.host)} resolves to an address that is not allowed ({why})"
                    raise FetchRefused(self._redirected(reason))
        return addresses

    def _request(
        self, target: Target, addresses: list[IPAddress], deadline: _Deadline
    ) -> tuple[http.client.HTTPConnection, http.client.HTTPResponse]:
        for address in addresses:
            conn: http.client.HTTPConnection
            if target.scheme == "https":
                conn = _PinnedHTTPSConnection(target, address, deadline.remaining(), self.tls)
            else:
                conn = _PinnedHTTPConnection(target, address, deadline.remaining())
            deadline.watch(conn)
            try:
                conn.connect()
            except (ssl.SSLError, TimeoutError):
                conn.close()
                raise
            except OSError:  # refused or unreachable: the next checked address, if any
                conn.close()
                continue
            try:
                conn.request("GET", target.path, headers=REQUEST_HEADERS)
                conn.sock.settimeout(deadline.remaining())
                return conn, conn.getresponse()
            except BaseException:
                conn.close()
                raise
        raise FetchRefused(self._redirected(f"could not connect to {target.origin}"))

    def _body(self, conn: http.client.HTTPConnection, response: http.client.HTTPResponse, deadline: _Deadline) -> bytes:
        limit = self.policy.max_bytes
        declared = (response.getheader("Content-Length") or "").strip()
        if declared.isdigit() and int(declared) > limit:
            raise TooLarge(int(declared), limit)
        chunks: list[bytes] = []
        total = 0
        while True:
            conn.sock.settimeout(deadline.remaining())
            chunk = response.read1(CHUNK_BYTES)
            if not chunk:
                break
            total += len(chunk)
            if total > limit:
                raise TooLarge(None, limit)
            chunks.append(chunk)
        deadline.remaining()  # the watchdog may have cut the body short
        if response.length:  # http.client's count of declared bytes still missing
            raise FetchRefused(f"the body from {self.target.origin} ended early")
        if total == 0:
            raise FetchRefused(f"{self.target.origin} sent an empty body")
        return b"".join(chunks)

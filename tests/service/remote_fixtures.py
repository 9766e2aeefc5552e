"""Local HTTP(S) servers that play the remote side of `image_url`, and the corpus of hostile
URLs the server must refuse. Shared by the unit tests and tests/e2e/test_image_url.py.

Servers listen on 127.0.0.1 on free ports, in daemon threads; the photo they serve is read
at test time from ../shared/quality (never copied into the repository).
"""

from __future__ import annotations

import pathlib
import ssl
import subprocess
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

QUALITY = pathlib.Path(__file__).resolve().parents[2].parent / "shared" / "quality"
PHOTO = QUALITY / "grabcut50" / "images" / "106024.jpg"


def photo_bytes() -> bytes:
    if not PHOTO.is_file():
        pytest.fail(f"{PHOTO} is missing: these tests serve a real photo from ../shared/quality")
    return PHOTO.read_bytes()


Route = Callable[[BaseHTTPRequestHandler], None]


def body(data: bytes, content_type: str = "image/jpeg", chunked: bool = False) -> Route:
    def answer(handler: BaseHTTPRequestHandler) -> None:
        handler.send_response(200)
        handler.send_header("Content-Type", content_type)
        if chunked:  # no Content-Length: the size is only known while streaming
            handler.send_header("Transfer-Encoding", "chunked")
            handler.end_headers()
            for start in range(0, len(data), 4096):
                part = data[start : start + 4096]
                handler.wfile.write(b"%x\r\n%s\r\n" % (len(part), part))
            handler.wfile.write(b"0\r\n\r\n")
        else:
            handler.send_header("Content-Length", str(len(data)))
            handler.end_headers()
            handler.wfile.write(data)

    return answer


def redirect(location: str, status: int = 302) -> Route:
    def answer(handler: BaseHTTPRequestHandler) -> None:
        handler.send_response(status)
        handler.send_header("Location", location)
        handler.send_header("Content-Length", "0")
        handler.end_headers()

    return answer


def status(code: int) -> Route:
    def answer(handler: BaseHTTPRequestHandler) -> None:
        payload = b"nothing here"
        handler.send_response(code)
        handler.send_header("Content-Length", str(len(payload)))
        handler.end_headers()
        handler.wfile.write(payload)

    return answer


def raw(data: bytes) -> Route:
    """Writes `data` as the whole answer and closes: for malformed and truncated responses."""

    def answer(handler: BaseHTTPRequestHandler) -> None:
        handler.wfile.write(data)
        handler.wfile.flush()
        handler.close_connection = True

    return answer


def declared_length(length: int) -> Route:
    """Announces `length` bytes and sends none: only a client that trusts the header ends fast."""

    def answer(handler: BaseHTTPRequestHandler) -> None:
        handler.send_response(200)
        handler.send_header("Content-Type", "image/jpeg")
        handler.send_header("Content-Length", str(length))
        handler.end_headers()
        handler.wfile.flush()
        time.sleep(30)

    return answer


def drip(headers_too: bool = False, interval_s: float = 0.1, total_s: float = 30.0) -> Route:
    """One byte per interval, for far longer than any test's time cap."""

    def answer(handler: BaseHTTPRequestHandler) -> None:
        head = b"HTTP/1.1 200 OK\r\nContent-Type: image/jpeg\r\nContent-Length: 100000\r\n\r\n"
        stream = head if headers_too else b""
        if not headers_too:
            handler.wfile.write(head)
        stream += b"\xff" * 1000
        end = time.monotonic() + total_s
        try:
            for byte in stream:
                if time.monotonic() > end:
                    return
                handler.wfile.write(bytes([byte]))
                handler.wfile.flush()
                time.sleep(interval_s)
        except OSError:
            return

    return answer


class LocalServer:
    """Answers GETs from a table of routes (path without the query -> Route)."""

    def __init__(self, routes: dict[str, Route], tls: ssl.SSLContext | None = None, host: str = "127.0.0.1"):
        self.routes = dict(routes)
        self.seen: list[tuple[str, str | None]] = []  # (path, Host header) of each request
        self.sni: list[str | None] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:  # noqa: N802 - the http.server naming
                server.seen.append((self.path, self.headers.get("Host")))
                route = server.routes.get(self.path.split("?", 1)[0], status(404))
                route(self)

            def log_message(self, *args) -> None:
                pass

        family_server = ThreadingHTTPServer
        if ":" in host:
            import socket

            class V6Server(ThreadingHTTPServer):
                address_family = socket.AF_INET6

            family_server = V6Server
        self.httpd = family_server((host, 0), Handler)
        self.httpd.daemon_threads = True
        if tls is not None:
            tls.sni_callback = lambda sock, name, ctx: self.sni.append(name)
            self.httpd.socket = tls.wrap_socket(self.httpd.socket, server_side=True)
        self.port = self.httpd.server_address[1]
        self.host = host
        self.scheme = "https" if tls is not None else "http"
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()

    def url(self, path: str, host: str | None = None) -> str:
        host = host or (f"[{self.host}]" if ":" in self.host else self.host)
        return f"{self.scheme}://{host}:{self.port}{path}"

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def __enter__(self) -> "LocalServer":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def self_signed(directory: pathlib.Path, name: str = "localhost") -> pathlib.Path:
    """A certificate and key (one PEM file) for `name` and 127.0.0.1, made with openssl."""
    pem = directory / "cert.pem"
    key = directory / "key.pem"
    try:
        subprocess.run(
            ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", f"/CN={name}",
             "-addext", f"subjectAltName=DNS:{name},IP:127.0.0.1", "-keyout", str(key), "-out", str(pem)],
            check=True, capture_output=True, timeout=60,
        )
    except FileNotFoundError:
        pytest.skip("openssl is not installed")
    pem.write_text(pem.read_text() + key.read_text())
    return pem


# Refused whatever the allow-list holds, as long as it holds no more than 127.0.0.1 (the host
# the e2e server allows for its positive test): (URL, a fragment of the reason).
HOSTILE: list[tuple[str, str]] = [
    # names that resolve to loopback here (/etc/hosts), whatever the spelling
    ("http://localhost/a.jpg", "resolves to an address that is not allowed (loopback)"),
    ("http://LOCALHOST:8080/a.jpg", "resolves to an address that is not allowed (loopback)"),
    ("http://localhost./a.jpg", "the host 'localhost.'"),  # loopback where it resolves, unresolved here
    ("https://localhost/a.jpg", "resolves to an address that is not allowed (loopback)"),
    # loopback, private, shared, special IPv4
    ("http://127.0.0.2/a.jpg", "address 127.0.0.2 is not allowed (loopback)"),
    ("http://10.0.0.1/a.jpg", "address 10.0.0.1 is not allowed (private network)"),
    ("http://172.16.5.4/a.jpg", "(private network)"),
    ("http://192.168.1.1/a.jpg", "(private network)"),
    ("http://100.64.0.1/a.jpg", "(shared carrier-grade NAT network)"),
    ("http://198.18.0.1/a.jpg", "(benchmarking network)"),
    ("http://192.0.0.170/a.jpg", "(IETF protocol assignments)"),
    ("http://0.0.0.0/a.jpg", "address 0.0.0.0 is not allowed"),
    ("http://0.0.0.0:8080/a.jpg", "address 0.0.0.0 is not allowed"),
    ("http://224.0.0.1/a.jpg", "(multicast)"),
    ("http://255.255.255.255/a.jpg", "(reserved / broadcast)"),
    ("http://240.0.0.1/a.jpg", "(reserved / broadcast)"),
    # cloud metadata
    ("http://169.254.169.254/latest/meta-data/", "address 169.254.169.254 is not allowed (cloud metadata service)"),
    ("http://[fd00:ec2::254]/latest/meta-data/", "address fd00:ec2::254 is not allowed (cloud metadata service)"),
    ("http://[::ffff:169.254.169.254]/latest/meta-data/", "(that is 169.254.169.254) is not allowed (cloud metadata"),
    ("http://169.254.1.1/a.jpg", "(link-local)"),
    # other spellings of 127.0.0.1
    ("http://2130706433/a.jpg", "numeric address in an unusual spelling"),
    ("http://0177.0.0.1/a.jpg", "numeric address in an unusual spelling"),
    ("http://0x7f000001/a.jpg", "numeric address in an unusual spelling"),
    ("http://0x7f.0.0.1/a.jpg", "numeric address in an unusual spelling"),
    ("http://127.1/a.jpg", "numeric address in an unusual spelling"),
    ("http://127.000.000.001/a.jpg", "numeric address in an unusual spelling"),
    ("http://127.0.0.1./a.jpg", "numeric address in an unusual spelling"),
    ("http://%31%32%37.0.0.1/a.jpg", "the host '%31%32%37.0.0.1' is a numeric address"),
    ("http://%6c%6f%63%61%6c%68%6f%73%74/a.jpg", "is not a valid host name"),  # localhost
    ("http://127\u30020\u30020\u30021/a.jpg", "xn--"),  # ideographic full stops: 127.0.0.1 to WHATWG
    ("http://\uff11\uff12\uff17.0.0.1/a.jpg", "xn--"),  # fullwidth digits
    ("http://10.0.\n0.1/a.jpg", "spaces or control characters"),  # WHATWG drops tabs and newlines
    ("http://[::ffff:0177.0.0.1]/a.jpg", "not a valid IPv6 address"),
    # IPv6 loopback, unspecified, mapped, ULA, link-local, embedded IPv4
    ("http://[::1]/a.jpg", "address ::1 is not allowed (loopback)"),
    ("http://[::]/a.jpg", "address :: is not allowed (unspecified)"),
    ("http://[::ffff:127.0.0.1]/a.jpg", "(that is 127.0.0.1) is not allowed (loopback)"),
    ("http://[0:0:0:0:0:ffff:7f00:1]/a.jpg", "(that is 127.0.0.1) is not allowed (loopback)"),
    ("http://[::ffff:7f00:1]/a.jpg", "(that is 127.0.0.1) is not allowed (loopback)"),
    ("http://[::127.0.0.1]/a.jpg", "(IPv4-compatible (deprecated))"),
    ("http://[fc00::1]/a.jpg", "(unique local network)"),
    ("http://[fe80::1]/a.jpg", "(link-local)"),
    ("http://[fe80::1%25lo]/a.jpg", "is not a plain IPv6 address"),
    ("http://[ff02::1]/a.jpg", "(multicast)"),
    ("http://[64:ff9b::7f00:1]/a.jpg", "it carries 127.0.0.1: loopback"),
    ("http://[2002:a00:1::1]/a.jpg", "it carries 10.0.0.1: private network"),
    ("http://[2001:0:4136:e378:8000:63bf:3fff:fdd2]/a.jpg", "(Teredo tunnel)"),
    # schemes other than http(s)
    ("file:///etc/passwd", "only http and https URLs can be fetched, not 'file:'"),
    ("ftp://example.com/a.jpg", "not 'ftp:'"),
    ("gopher://127.0.0.1:6379/_INFO", "not 'gopher:'"),
    ("dict://127.0.0.1:11211/stats", "not 'dict:'"),
    ("data:image/png;base64,iVBORw0KGgo=", "not 'data:'"),
    ("javascript:alert(1)", "not 'javascript:'"),
    # user-info, backslash and authority tricks
    ("http://example.com@127.0.0.1/a.jpg", "user names and passwords in the URL are not allowed"),
    ("http://user:pass@example.com/a.jpg", "user names and passwords in the URL are not allowed"),
    ("http://example.com\\@127.0.0.1/a.jpg", "backslash"),
    ("http:127.0.0.1/a.jpg", "expected http:// followed by a host"),
    ("http:///127.0.0.1/a.jpg", "expected http:// followed by a host"),
    ("http://127.0.0.1 /a.jpg", "spaces or control characters"),
    ("//127.0.0.1/a.jpg", "not an absolute http:// or https:// URL"),
    # port tricks
    ("http://127.0.0.1:80:80/a.jpg", "are malformed"),
    ("http://127.0.0.1:0/a.jpg", "port 0 is out of range"),
    ("http://127.0.0.1:65536/a.jpg", "port 65536 is out of range"),
    ("http://127.0.0.1:+80/a.jpg", "are malformed"),
    ("http://127.0.0.1:/a.jpg", "are malformed"),
    ("http://[::1]:99999/a.jpg", "port 99999 is out of range"),
]

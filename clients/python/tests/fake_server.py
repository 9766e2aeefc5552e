"""A small HTTP server on 127.0.0.1 for the unit tests: answers what a test queues, records
what it received (headers, the body as it arrived, chunked or not, and when)."""

from __future__ import annotations

import email.parser
import email.policy
import http.server
import threading
import time
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional, Union


@dataclass
class Reply:
    status: int = 200
    body: bytes = b""
    headers: Dict[str, str] = field(default_factory=dict)
    delay_s: float = 0.0  # before answering (timeouts)
    drop: bool = False  # close the connection without an answer (a reset)


@dataclass
class Seen:
    method: str
    path: str
    headers: Dict[str, str]
    body: bytes
    chunked: bool
    at: float  # time.monotonic() when the whole request had arrived

    def form(self) -> Dict[str, Union[str, bytes]]:
        """The multipart/form-data fields: text as str, files (with a filename) as bytes."""
        raw = f"Content-Type: {self.headers['content-type']}\r\n\r\n".encode() + self.body
        message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(raw)
        fields: Dict[str, Union[str, bytes]] = {}
        for part in message.iter_parts():
            name = part.get_param("name", header="content-disposition")
            payload = part.get_payload(decode=True)
            fields[name] = payload if part.get_filename() is not None else payload.decode("utf-8")
        return fields


Answer = Union[Reply, Callable[[Seen], Reply]]

PNG_HEADERS = {
    "Content-Type": "image/png",
    "X-Width": "40",
    "X-Height": "30",
    "X-Type": "person",
    "X-Credits-Charged": "1",
    "X-Credits-Remaining": "49.5",
    "X-Foreground-Top": "1",
    "X-Foreground-Left": "2",
    "X-Foreground-Width": "30",
    "X-Foreground-Height": "25",
    "X-RateLimit-Limit": "500",
    "X-RateLimit-Remaining": "499",
    "X-RateLimit-Reset": "1800000000",
    "X-Request-Id": "req-ok",
}


def ok_png(body: bytes = b"\x89PNG fake", **extra: str) -> Reply:
    return Reply(200, body, {**PNG_HEADERS, **extra})


def error_reply(status: int, code: str, detail: str = "what went wrong", **headers: str) -> Reply:
    body = ('{"errors":[{"title":"Title %d","code":"%s","detail":"%s"}]}' % (status, code, detail)).encode()
    return Reply(status, body, {"Content-Type": "application/json", "X-Request-Id": f"req-{status}", **headers})


class FakeServer:
    def __init__(self) -> None:
        self.answers: List[Answer] = []
        self.seen: List[Seen] = []
        self.default: Answer = ok_png()
        self._lock = threading.Lock()
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args) -> None:  # quiet
                pass

            def _body(self) -> tuple:
                if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
                    parts = []
                    while True:
                        size = int(self.rfile.readline().split(b";")[0].strip(), 16)
                        if size == 0:
                            self.rfile.readline()
                            return b"".join(parts), True
                        parts.append(self.rfile.read(size))
                        self.rfile.readline()
                return self.rfile.read(int(self.headers.get("Content-Length", "0"))), False

            def _handle(self) -> None:
                body, chunked = self._body()
                seen = Seen(
                    self.command, self.path, {k.lower(): v for k, v in self.headers.items()}, body, chunked,
                    time.monotonic(),
                )
                with server._lock:
                    server.seen.append(seen)
                    answer = server.answers.pop(0) if server.answers else server.default
                reply = answer(seen) if callable(answer) else answer
                if reply.delay_s:
                    time.sleep(reply.delay_s)
                if reply.drop:
                    self.close_connection = True
                    self.connection.close()
                    return
                self.send_response(reply.status)
                for name, value in reply.headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(reply.body)))
                self.end_headers()
                self.wfile.write(reply.body)

            do_GET = do_POST = _handle

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self._thread = threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True)
        self._thread.start()

    def queue(self, *answers: Answer) -> None:
        with self._lock:
            self.answers.extend(answers)

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    @property
    def last(self) -> Optional[Seen]:
        return self.seen[-1] if self.seen else None

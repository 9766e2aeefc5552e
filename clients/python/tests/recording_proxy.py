"""A forwarding HTTP proxy on 127.0.0.1 in front of the real gateway, recording each exchange
(when the request began to arrive, its Idempotency-Key, the status and Retry-After, when the
answer went back, and both sides' headers), so a test can see what a client did between answers
and what the server told it. The other SDKs' end-to-end tests (tests/clients/) use it too."""

from __future__ import annotations

import http.client
import http.server
import threading
import time
import urllib.parse
from dataclasses import dataclass, field
from typing import Dict, List, Optional

HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "te", "trailer", "upgrade", "proxy-connection"}


@dataclass
class Exchange:
    began: float  # time.monotonic() when the request line arrived
    idempotency_key: Optional[str]
    status: int
    retry_after: Optional[str]
    answered: float  # when the answer began to go back to the client
    path: str = ""
    sent: Dict[str, str] = field(default_factory=dict)  # the request's headers, lower-case names
    headers: Dict[str, str] = field(default_factory=dict)  # the answer's headers, lower-case names


class RecordingProxy:
    def __init__(self, upstream: str):
        target = urllib.parse.urlsplit(upstream)
        self.exchanges: List[Exchange] = []
        lock = threading.Lock()
        proxy = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args) -> None:
                pass

            def parse_request(self) -> bool:
                self._began = time.monotonic()
                return super().parse_request()

            def _body(self) -> bytes:
                if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
                    parts = []
                    while True:
                        size = int(self.rfile.readline().split(b";")[0].strip(), 16)
                        if size == 0:
                            self.rfile.readline()
                            return b"".join(parts)
                        parts.append(self.rfile.read(size))
                        self.rfile.readline()
                return self.rfile.read(int(self.headers.get("Content-Length", "0")))

            def _forward(self) -> None:
                body = self._body()
                headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP_BY_HOP}
                headers["Content-Length"] = str(len(body))
                upstream_conn = http.client.HTTPConnection(target.hostname, target.port, timeout=300)
                try:
                    upstream_conn.request(self.command, self.path, body=body, headers=headers)
                    answer = upstream_conn.getresponse()
                    content = answer.read()
                    # Recorded before the answer goes out: once the client holds an answer, its
                    # exchange is in the list (a client that exits at once raced the append).
                    with lock:
                        proxy.exchanges.append(Exchange(
                            self._began, self.headers.get("Idempotency-Key"), answer.status,
                            answer.getheader("Retry-After"), time.monotonic(), self.path,
                            {k.lower(): v for k, v in self.headers.items()},
                            {k.lower(): v for k, v in answer.getheaders()},
                        ))
                    self.send_response(answer.status, answer.reason)
                    for name, value in answer.getheaders():
                        if name.lower() not in HOP_BY_HOP and name.lower() != "content-length":
                            self.send_header(name, value)
                    self.send_header("Content-Length", str(len(content)))
                    self.end_headers()
                    self.wfile.write(content)
                    self.wfile.flush()
                finally:
                    upstream_conn.close()

            do_GET = do_POST = _forward

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True).start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

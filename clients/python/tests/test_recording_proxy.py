"""The recording proxy that the end-to-end tests read: an exchange is on record by the time its
client holds the answer (a client that exited at once once found its last call missing)."""

from __future__ import annotations

import urllib.request

from fake_server import FakeServer, Reply, Seen
from recording_proxy import RecordingProxy


def test_an_answer_held_by_the_client_is_already_on_record(fake_server: FakeServer):
    fake_server.default = lambda seen: Reply(200, b"ok", {"X-Request-Id": seen.headers["x-n"]})
    proxy = RecordingProxy(fake_server.url)
    try:
        for n in range(200):
            request = urllib.request.Request(f"{proxy.url}/v1.0/removebg", data=b"x", headers={"X-N": str(n)})
            with urllib.request.urlopen(request, timeout=30) as answer:
                assert answer.read() == b"ok"
            recorded = [e for e in proxy.exchanges if e.headers.get("x-request-id") == str(n)]
            assert len(recorded) == 1, n
            assert recorded[0].status == 200 and recorded[0].sent["x-n"] == str(n)
            assert recorded[0].began <= recorded[0].answered
    finally:
        proxy.close()

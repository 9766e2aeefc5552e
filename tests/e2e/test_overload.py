"""Admission by time through the real Envoy, server and model (service/admission.py).

Load and deadlines are sized from the service time this stack measures first, never from how
fast a machine is assumed to be: the same test holds on an AVX2-only CPU running fp32 as on a
VNNI one running int8.
"""

from __future__ import annotations

import datetime
import io
import json
import math
import pathlib
import re
import socket
import statistics
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal
from urllib.parse import urlsplit

import pytest
import requests
from PIL import Image

from api_calls import account_maker, balance

pytestmark = pytest.mark.e2e

BOUND_S = 3.0  # this stack's CLEARBG_MAX_QUEUE_WAIT_S: small, so a few dozen clients overload it
WORKERS = 2


def _photo(width: int = 480, height: int = 360, seed: int = 1) -> bytes:
    """A small photo with a subject (a bright disc on a textured background)."""
    import numpy as np

    rng = np.random.default_rng(seed)
    pixels = rng.integers(40, 90, (height, width, 3), dtype=np.uint8)
    yy, xx = np.mgrid[:height, :width]
    disc = (yy - height / 2) ** 2 + (xx - width / 2) ** 2 < (min(width, height) / 3) ** 2
    pixels[disc] = (220, 60, 40)
    out = io.BytesIO()
    Image.fromarray(pixels).save(out, "JPEG", quality=90)
    return out.getvalue()


def _post(session: requests.Session, url: str, key: str, photo: bytes, timeout: float = 600) -> requests.Response:
    return session.post(url + "/v1.0/removebg", files={"image_file": ("p.jpg", photo, "image/jpeg")},
                        data={"size": "small"}, headers={"X-Api-Key": key}, timeout=timeout)


def _rss_mb(pid: int) -> float:
    text = pathlib.Path(f"/proc/{pid}/status").read_text()
    return int(re.search(r"VmRSS:\s+(\d+) kB", text).group(1)) / 1024


def _loaded_service_time(url: str, key: str, photo: bytes) -> float:
    """Seconds one call takes while the workers are all busy (calls side by side share the cores),
    the median of a few rounds after a warm-up round."""
    times = []
    with ThreadPoolExecutor(max_workers=WORKERS) as pool:
        for round_ in range(4):
            def timed(_):
                with requests.Session() as session:
                    began = time.monotonic()
                    assert _post(session, url, key, photo).status_code == 200
                    return time.monotonic() - began
            took = list(pool.map(timed, range(WORKERS)))
            if round_:
                times.extend(took)
    return statistics.median(times)


@pytest.fixture(scope="module")
def busy_stack(stack_factory):
    # The load is the net's: the cache off, or every call after the first would skip it.
    with stack_factory(CLEARBG_MAX_QUEUE_WAIT_S=str(BOUND_S), CLEARBG_ENGINE_WORKERS=str(WORKERS),
                       CLEARBG_MATTE_CACHE_MB="0") as running:
        yield running


# serial (pyproject.toml's markers): the load is sized from a service time measured first, which
# other tests' work beside it would change between the measuring and the load.
@pytest.mark.serial
def test_overload_is_answered_in_time_and_charges_exactly_the_answers(busy_stack):
    """4x more concurrent clients than the server can hold within its bound, for a minute (or
    long enough for the workers to serve every client three times over, where a call takes long):
    every answer a 200 or a 503 `overloaded` with Retry-After; clients honouring it all get
    served; nothing waits past the bound plus a service time; memory stays flat; charges = the 200s."""
    with account_maker(busy_stack.database_url) as make:
        key = make("overload", payg=Decimal(100000), rate_limit_per_minute=100000)
    url, photo = busy_stack.rest_url, _photo()
    service_s = _loaded_service_time(url, key, photo)
    capacity = WORKERS * (1 + BOUND_S / service_s)  # in the engine plus queued within the bound
    clients = max(8, math.ceil(4 * capacity))
    before, _ = balance(busy_stack, key)
    server = busy_stack.server_pids[0]
    log_mark = busy_stack.log.stat().st_size

    duration = max(60.0, 3 * clients * service_s / WORKERS)
    stop_at = time.monotonic() + duration
    answers: list[tuple[int, float, str | None, str | None]] = []  # status, seconds, code, retry-after
    retries_honoured: list[bool] = []  # per retry after waiting Retry-After: served at once?
    served_per_client = [0] * clients
    memory: list[tuple[float, float]] = []
    lock = threading.Lock()

    def client(number: int) -> None:
        with requests.Session() as session:
            after_wait = False
            while time.monotonic() < stop_at:
                began = time.monotonic()
                response = _post(session, url, key, photo)
                took = time.monotonic() - began
                code = response.json()["errors"][0]["code"] if response.status_code != 200 else None
                retry_after = response.headers.get("retry-after")
                with lock:
                    answers.append((response.status_code, took, code, retry_after))
                    if after_wait:
                        retries_honoured.append(response.status_code == 200)
                if response.status_code == 200:
                    served_per_client[number] += 1
                    after_wait = False
                elif response.status_code == 503 and retry_after:
                    time.sleep(int(retry_after))  # honoured as sent
                    after_wait = True
                else:
                    return

    def sample_memory() -> None:
        began = time.monotonic()
        while time.monotonic() < stop_at:
            memory.append((time.monotonic() - began, _rss_mb(server)))
            time.sleep(0.5)

    threads = [threading.Thread(target=client, args=(n,)) for n in range(clients)]
    sampler = threading.Thread(target=sample_memory)
    for thread in (*threads, sampler):
        thread.start()
    for thread in (*threads, sampler):
        thread.join(timeout=600)

    ok = [a for a in answers if a[0] == 200]
    refused = [a for a in answers if a[0] == 503]
    slowest = max(a[1] for a in answers)
    first_half = max(m for t, m in memory if t < duration / 2)
    second_half = max(m for t, m in memory if t >= duration / 2)
    # The launcher copies the server's lines into the log as they come: give the last ones a moment.
    _wait_for(lambda: len(_admissions(busy_stack.log, since=log_mark)) >= len(ok), 10, "every admitted call logged")
    admitted = _admissions(busy_stack.log, since=log_mark)
    overshoot = statistics.mean(waited - expected for expected, waited in admitted)
    waits = sorted(waited for _, waited in admitted)
    times = sorted(a[1] for a in ok)
    print(f"\nloaded service time {service_s:.2f} s, capacity ~{capacity:.0f} calls, {clients} clients: "
          f"{len(ok)} x 200, {len(refused)} x 503 in {duration:.0f} s; slowest answer {slowest:.2f} s "
          f"(bound {BOUND_S} s), 90 % within {times[int(0.9 * len(times))]:.2f} s; 90 % waited in the queue "
          f"at most {waits[int(0.9 * len(waits))]:.2f} s, the longest {waits[-1]:.2f} s; waits past the "
          f"expected start {overshoot:+.2f} s on average; honoured retries served {sum(retries_honoured)}/{len(retries_honoured)}; "
          f"server RSS peak {first_half:.0f} MB then {second_half:.0f} MB")
    assert {a[0] for a in answers} <= {200, 503}, sorted({a[0] for a in answers})
    assert refused, "the load did not overload the server"
    assert all(code == "overloaded" and retry_after and int(retry_after) >= 1 for _, _, code, retry_after in refused)
    # Admission is by expected start: every admitted call was expected to start within the bound,
    # and the expectation is honest (its waits are not longer on the whole than expected).
    assert len(admitted) == len(ok), (len(admitted), len(ok))
    assert all(expected <= BOUND_S for expected, _ in admitted), max(admitted)
    assert overshoot <= 0.25 * service_s, overshoot
    # Nothing waits in the queue past the bound plus a service time (90 % of calls: the service
    # time's own noise on a shared 2-core machine moves single calls' starts by up to twice it).
    assert waits[int(0.9 * len(waits))] <= BOUND_S + service_s, waits[-10:]
    # Seen by the clients, whose time adds their own call, Envoy's and 50-odd client threads
    # sharing the test's interpreter (a run on such a machine: 90 % within 4.15 s, 0.16 s past
    # the bound plus two service times): none near what an unbounded queue makes them wait
    # (clients * service_s / WORKERS, 4x the bound and more).
    assert times[int(0.9 * len(times))] <= BOUND_S + 3 * service_s, times[-10:]
    assert slowest <= 2 * BOUND_S + 2 * service_s, slowest
    assert all(count > 0 for count in served_per_client), served_per_client  # honouring clients get served
    assert sum(retries_honoured) >= 2 * len(retries_honoured) / 3, "Retry-After did not point at a free place"
    assert second_half <= first_half * 1.10 + 50, memory
    after, _ = balance(busy_stack, key)
    assert before - after == len(ok)  # charged exactly the 200s
    assert sum(Decimal(1) for a in ok) == before - after


def _raw_post(url: str, key: str, photo: bytes) -> socket.socket:
    """Sends a whole multipart POST on a raw socket and returns it unread (to hang up on)."""
    parts = urlsplit(url)
    boundary = "clearbgboundary"
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"size\"\r\n\r\nsmall\r\n"
            f"--{boundary}\r\nContent-Disposition: form-data; name=\"image_file\"; filename=\"p.jpg\"\r\n"
            f"Content-Type: image/jpeg\r\n\r\n").encode() + photo + f"\r\n--{boundary}--\r\n".encode()
    head = (f"POST /v1.0/removebg HTTP/1.1\r\nHost: {parts.netloc}\r\nX-Api-Key: {key}\r\n"
            f"Content-Type: multipart/form-data; boundary={boundary}\r\nContent-Length: {len(body)}\r\n\r\n").encode()
    sock = socket.create_connection((parts.hostname, parts.port), timeout=30)
    sock.sendall(head + body)
    return sock


def _server_events(log: pathlib.Path, since: int = 0) -> list[dict]:
    with open(log, "rb") as lines:
        lines.seek(since)
        text = lines.read().decode(errors="replace")
    found = re.findall(r"^\[server[^\]]*\] (\{.*\})$", text, re.MULTILINE)
    return [json.loads(line) for line in found]


def _admissions(log: pathlib.Path, since: int) -> list[tuple[float, float]]:
    """(expected start when admitted, seconds it then waited) of each call that reached the
    engine, from the server's `queued` and `engine_start` lines (joined by request id)."""
    queued, waited = {}, []
    for event in _server_events(log, since):
        if event.get("event") == "queued":
            queued[event["request_id"]] = (event["expected_start_s"], _seconds(event["timestamp"]))
        elif event.get("event") == "engine_start" and event["request_id"] in queued:
            expected, at = queued[event["request_id"]]
            waited.append((expected, _seconds(event["timestamp"]) - at))
    return waited


def _seconds(timestamp: str) -> float:
    return datetime.datetime.fromisoformat(timestamp.replace("Z", "+00:00")).timestamp()


def _count(log: pathlib.Path, event: str) -> int:
    return len(re.findall(rf'^\[server[^\]]*\] .*"event": "{event}"', log.read_text(errors="replace"), re.MULTILINE))


def _wait_for(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def test_a_client_gone_while_queued_causes_no_inference_and_no_charge(stack_factory):
    with stack_factory(CLEARBG_ENGINE_WORKERS="1", CLEARBG_MAX_QUEUE_WAIT_S="120") as running:
        with account_maker(running.database_url) as make:
            key = make("gone", payg=Decimal(10))
        url = running.rest_url
        big = _photo(4000, 3000, seed=2)  # 12 MP: long enough in the engine to queue behind
        before_starts, before_queued = _count(running.log, "engine_start"), _count(running.log, "queued")
        with ThreadPoolExecutor(max_workers=2) as pool:
            first = pool.submit(lambda: _post(requests.Session(), url, key, big))
            _wait_for(lambda: _count(running.log, "engine_start") > before_starts, 120, "the first call in the engine")
            second = pool.submit(lambda: _post(requests.Session(), url, key, big))
            _wait_for(lambda: _count(running.log, "queued") >= before_queued + 2, 60, "the second call queued")
            gone = _raw_post(url, key, _photo(seed=3))
            _wait_for(lambda: _count(running.log, "queued") >= before_queued + 3, 60, "the third call queued")
            gone.close()  # the client hangs up while its call waits behind the other two
            assert first.result(600).status_code == 200
            assert second.result(600).status_code == 200
        time.sleep(1.0)  # the refund is written as the cancelled call unwinds
        assert _count(running.log, "engine_start") == before_starts + 2  # the third never ran
        total, _ = balance(running, key)
        assert total == Decimal(8)  # two charged, the third's reservation given back
        from service.storage import open_storage

        storage = open_storage(running.database_url)
        try:
            kinds = [entry.kind for entry in storage.ledger(storage.find_key(key)[0].id)]
        finally:
            storage.close()
        assert sorted(kinds) == ["charge", "charge", "charge", "refund"], kinds

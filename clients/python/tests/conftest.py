"""Fixtures for the SDK's tests, which run where the SDK is installed as a user installs it
(`pip install ./clients/python[grpc,test]` into a venv of its own: `make test-sdk-python`).

- `fake_server`: a small HTTP server on 127.0.0.1 (unit tests).
- `stack`: the real service (Envoy + gRPC server + model), started the way `make run` starts it
  (`python -m service.launcher` with the server's own venv, free ports, a temp SQLite database),
  once per session. Accounts are made with the operator's tool (`python -m service.admin`), as
  an operator of a self-hosted ClearBG would.
"""

from __future__ import annotations

import base64
import io
import json
import os
import pathlib
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from decimal import Decimal
from typing import Callable, Dict, Iterator, List, Tuple

import pytest

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))

from fake_server import FakeServer  # noqa: E402

# A suite started in the background by a non-interactive shell (`make test &`) inherits SIGINT
# ignored, and so would the CLIs it starts, which then sit out the tests' Ctrl-C. A handler here
# (reset to the default on exec) gives them the default a terminal gives.
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)

REPO = pathlib.Path(__file__).resolve().parents[3]
QUALITY = REPO.parent / "shared" / "quality"
# A woman in a black dress, full body, 321x481 (under size=small's 0.25 MP: no rescaling).
PERSON = QUALITY / "grabcut50" / "images" / "388016.jpg"
DEV_KEY = "sdk-e2e-dev-key-0123456789"
START_TIMEOUT_S = 300.0


@pytest.fixture(autouse=True)
def _no_ambient_settings(monkeypatch):
    """A developer's own CLEARBG_API_KEY / CLEARBG_BASE_URL never leak into a test."""
    for name in ("CLEARBG_API_KEY", "CLEARBG_BASE_URL", "CLEARBG_GRPC_TARGET"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def fake_server() -> Iterator[FakeServer]:
    server = FakeServer()
    try:
        yield server
    finally:
        server.close()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def server_python() -> pathlib.Path:
    python = pathlib.Path(os.environ.get("CLEARBG_SERVER_PYTHON") or REPO / ".venv" / "bin" / "python")
    if not python.is_file():
        pytest.fail(f"the server's venv ({python}) is missing: run `make deps` in {REPO} first")
    return python


@dataclass(frozen=True)
class Stack:
    rest_url: str
    grpc_target: str
    api_key: str  # the development account's
    database_url: str
    log: pathlib.Path

    def admin(self, *args: str) -> object:
        """The operator's tool on this stack's database, its JSON answer."""
        run = subprocess.run(
            [str(server_python()), "-m", "service.admin", "--database-url", self.database_url, "--json", *args],
            cwd=REPO, capture_output=True, text=True, timeout=60,
        )
        assert run.returncode == 0, run.stderr
        return json.loads(run.stdout)

    def account(self, credits: str = "100", rate_limit: int = 500, free_calls: int = 0) -> Tuple[int, str]:
        """A new account with its key: (account id, key)."""
        made = self.admin(
            "create-account", "sdk-tests", "--subscription", credits, "--rate-limit", str(rate_limit),
            "--free-calls", str(free_calls), "--with-key",
        )
        return made["account"]["id"], made["api_key"]  # type: ignore[index]

    def spend_rate_limit(self, key: str, units: int) -> None:
        """Uploads that are not images: each answered 400 at once and free, but one unit of the
        key's rate limit, so a run started next finds the bucket as low as the test needs,
        however fast or slow this machine serves."""
        body = json.dumps({"image_file_b64": base64.b64encode(b"not an image").decode()}).encode()
        for _ in range(units):
            request = urllib.request.Request(
                self.rest_url + "/v1.0/removebg", data=body, method="POST",
                headers={"X-Api-Key": key, "Content-Type": "application/json"},
            )
            try:
                urllib.request.urlopen(request, timeout=60).close()
            except urllib.error.HTTPError as refused:
                assert refused.code == 400, refused.code
            else:
                raise AssertionError("a body that is not an image was accepted")

    def ledger(self, account_id: int) -> List[Dict[str, str]]:
        return self.admin("ledger", str(account_id))  # type: ignore[return-value]

    def charges(self, account_id: int) -> int:
        """Credits taken and kept (charges less refunds)."""
        kinds = [entry["kind"] for entry in self.ledger(account_id)]
        return kinds.count("charge") - kinds.count("refund")

    def balance(self, account_id: int) -> Decimal:
        return Decimal(self.admin("show", str(account_id))["total"])  # type: ignore[index]


def _healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(url + "/healthz", timeout=2) as response:
            return response.status == 200
    except (urllib.error.URLError, OSError):
        return False


@pytest.fixture(scope="session")
def stack(tmp_path_factory) -> Iterator[Stack]:
    workdir = tmp_path_factory.mktemp("stack")
    http_port, grpc_port = free_port(), free_port()
    database_url = f"sqlite:///{workdir / 'clearbg.db'}"
    env = dict(
        os.environ,
        CLEARBG_HTTP_PORT=str(http_port),
        CLEARBG_GRPC_PORT=str(grpc_port),
        CLEARBG_DATABASE_URL=database_url,
        CLEARBG_DEV_API_KEY=DEV_KEY,
        # One view, not also mirrored nor looked at again, unless asked: as the server's own
        # suite (tests/conftest.py).
        CLEARBG_MIRROR=os.environ.get("CLEARBG_MIRROR", "0"),
        CLEARBG_NET_LOOKS=os.environ.get("CLEARBG_NET_LOOKS", "none"),
        PYTHONUNBUFFERED="1",
    )
    log_path = workdir / "stack.log"
    rest_url = f"http://127.0.0.1:{http_port}"
    with open(log_path, "w") as log:
        process = subprocess.Popen(
            [str(server_python()), "-m", "service.launcher"], cwd=REPO, env=env, stdout=log,
            stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
        )
        try:
            deadline = time.monotonic() + START_TIMEOUT_S
            while not _healthy(rest_url):
                if process.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"the stack did not start (exit {process.poll()}):\n{log_path.read_text()[-4000:]}")
                time.sleep(0.3)
            yield Stack(rest_url, f"127.0.0.1:{grpc_port}", DEV_KEY, database_url, log_path)
        finally:
            process.send_signal(signal.SIGTERM)  # the launcher stops the server, then Envoy
            try:
                process.wait(60)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()


@pytest.fixture(scope="session")
def person() -> bytes:
    if not PERSON.is_file():
        pytest.fail(f"{PERSON} is missing: the e2e tests read a real photo from ../shared/quality")
    return PERSON.read_bytes()


def synthetic_photo(index: int, size: Tuple[int, int] = (400, 300)) -> bytes:
    """A small JPEG (0.12 MP): a coloured figure on a soft gradient, different for each index."""
    from PIL import Image, ImageDraw, ImageFilter

    width, height = size
    image = Image.linear_gradient("L").resize(size).convert("RGB")
    tint = Image.new("RGB", size, ((index * 37) % 200 + 30, (index * 71) % 200 + 30, (index * 113) % 200 + 30))
    image = Image.blend(image, tint, 0.6).filter(ImageFilter.GaussianBlur(3))
    draw = ImageDraw.Draw(image)
    cx = width // 3 + (index * 13) % (width // 3)
    draw.ellipse((cx - 30, 40, cx + 30, 100), fill=(230, 190, 160))  # a head
    draw.rectangle((cx - 50, 100, cx + 50, height - 20), fill=(40 + index % 150, 40, 120))  # a body
    out = io.BytesIO()
    image.save(out, "JPEG", quality=90)
    return out.getvalue()


@pytest.fixture(scope="session")
def make_photos() -> Callable[[pathlib.Path, int], List[pathlib.Path]]:
    def make(folder: pathlib.Path, count: int) -> List[pathlib.Path]:
        folder.mkdir(parents=True, exist_ok=True)
        paths = []
        for index in range(count):
            path = folder / f"photo-{index:02d}.jpg"
            path.write_bytes(synthetic_photo(index))
            paths.append(path)
        return paths

    return make

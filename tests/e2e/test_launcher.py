"""`python -m service.launcher` as `make run` starts it: banner, key on the terminal, clean
stop on SIGTERM, loud non-zero exit when a child dies (and the other child is stopped)."""

from __future__ import annotations

import os
import pathlib
import signal
import subprocess
import sys
import threading
import time

import pytest
import requests

pytestmark = pytest.mark.e2e

ROOT = pathlib.Path(__file__).resolve().parents[2]


class Launcher:
    """The launcher in a subprocess, its output collected as it comes."""

    def __init__(self, tmp_path: pathlib.Path, http_port: int, grpc_port: int, metrics_port: int):
        self.http_port = http_port
        self.metrics_port = metrics_port
        env = dict(os.environ)
        env.update(
            CLEARBG_HTTP_PORT=str(http_port),
            CLEARBG_GRPC_PORT=str(grpc_port),
            CLEARBG_METRICS_PORT=str(metrics_port),
            CLEARBG_DATABASE_URL=f"sqlite:///{tmp_path / 'launcher.db'}",
            PYTHONUNBUFFERED="1",
        )
        env.pop("CLEARBG_DEV_API_KEY", None)
        self.process = subprocess.Popen(
            [sys.executable, "-m", "service.launcher"],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self.lines: list[str] = []
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        for line in self.process.stdout:
            self.lines.append(line)

    @property
    def output(self) -> str:
        return "".join(self.lines)

    def wait_for(self, text: str, timeout: float = 180.0) -> None:
        deadline = time.monotonic() + timeout
        while text not in self.output:
            assert self.process.poll() is None, f"launcher exited early:\n{self.output}"
            assert time.monotonic() < deadline, f"no {text!r} within {timeout} s:\n{self.output}"
            time.sleep(0.2)

    def children(self) -> list[int]:
        path = pathlib.Path(f"/proc/{self.process.pid}/task/{self.process.pid}/children")
        return [int(pid) for pid in path.read_text().split()]

    def wait(self, timeout: float = 60.0) -> int:
        code = self.process.wait(timeout)
        self.reader.join(5)
        return code

    def kill(self) -> None:
        if self.process.poll() is None:
            for pid in self.children():
                os.kill(pid, signal.SIGKILL)
            self.process.kill()
            self.process.wait()


def gone(pid: int) -> bool:
    """No such process, or only its zombie (a killed launcher's children are reaped by init)."""
    try:
        status = pathlib.Path(f"/proc/{pid}/status").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return True
    return "\nState:\tZ" in status


@pytest.fixture
def launcher(tmp_path, free_port):
    running = Launcher(tmp_path, free_port(), free_port(), free_port())
    yield running
    running.kill()


def test_prints_key_and_addresses_then_stops_cleanly_on_sigterm(launcher):
    launcher.wait_for("ClearBG is ready.")
    assert "Development API key: " in launcher.output
    key = launcher.output.split("Development API key: ", 1)[1].split()[0]
    assert f"http://127.0.0.1:{launcher.http_port}" in launcher.output
    # The dashboard, and the development user to sign in with (issue 17).
    assert "Development dashboard user: dev@localhost  password: " in launcher.output
    assert f"Dashboard  http://127.0.0.1:{launcher.http_port}/dashboard" in launcher.output
    page = requests.get(f"http://127.0.0.1:{launcher.http_port}/dashboard", timeout=10)
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    response = requests.get(
        f"http://127.0.0.1:{launcher.http_port}/v1.0/account", headers={"X-Api-Key": key}, timeout=10
    )
    assert response.status_code == 200
    admin = launcher.output.split("Envoy admin  http://", 1)[1].split()[0]
    assert admin.startswith("127.0.0.1:") and admin != "127.0.0.1:?"
    assert requests.get(f"http://{admin}/ready", timeout=5).text.strip() == "LIVE"
    # The operator's metrics: the server's and Envoy's, each one curl away (README, Operations).
    metrics = f"http://127.0.0.1:{launcher.metrics_port}/metrics"
    assert f"curl {metrics}" in launcher.output
    assert 'clearbg_calls_total{code="",route="GET /v1.0/account",status="200"} 1.0' in requests.get(metrics, timeout=5).text
    assert f"http://{admin}/stats/prometheus" in launcher.output
    assert "envoy_http_downstream_rq_total" in requests.get(f"http://{admin}/stats/prometheus", timeout=5).text
    children = launcher.children()
    assert len(children) == 2
    launcher.process.send_signal(signal.SIGTERM)
    assert launcher.wait() == 0
    assert all(gone(pid) for pid in children)


def test_dies_loudly_when_a_child_dies(launcher):
    launcher.wait_for("ClearBG is ready.")
    server, envoy = launcher.children()
    os.kill(server, signal.SIGKILL)
    assert launcher.wait() == 1
    assert "server exited with code -9" in launcher.output
    assert gone(envoy)


def test_wait_for_log_sees_a_line_written_later_and_gives_up_on_one_never_written(tmp_path):
    from service.launcher import wait_for_log

    log = tmp_path / "stack.log"
    writer = threading.Timer(0.3, lambda: log.write_text('[server] {"event": "inference_lanes_open"}\n'))
    writer.start()
    try:
        assert wait_for_log(log, r"^\[server\] .*inference_lanes_open", 10.0)
    finally:
        writer.join()
    began = time.monotonic()
    assert not wait_for_log(log, r"engine_failed", 0.5)
    assert time.monotonic() - began >= 0.5


def _port_free(port: int) -> bool:
    """Nothing listens there: a new server could bind it (with SO_REUSEADDR, as servers do: the
    gateway's closed connections to it may linger in TIME_WAIT for a minute)."""
    import socket

    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
            sock.listen()
        except OSError:
            return False
    return True


def test_ctrl_c_stops_both_promptly(launcher):
    """Nothing in flight: the stack is down well within the server's grace (10 s); it took ~20 s
    when the server waited out grpc.aio's grace on the gateway's open connection."""
    launcher.wait_for("ClearBG is ready.")
    children = launcher.children()
    began = time.monotonic()
    launcher.process.send_signal(signal.SIGINT)
    assert launcher.wait() == 0
    took = time.monotonic() - began
    assert took < 10.0, f"Ctrl-C took {took:.1f} s"
    assert all(gone(pid) for pid in children)


def test_a_second_ctrl_c_stops_at_once(launcher):
    launcher.wait_for("ClearBG is ready.")
    children = launcher.children()
    launcher.process.send_signal(signal.SIGINT)
    time.sleep(0.2)
    launcher.process.send_signal(signal.SIGINT)
    assert launcher.wait(20) == 130
    assert "stopping now" in launcher.output
    deadline = time.monotonic() + 10
    while not all(gone(pid) for pid in children):
        assert time.monotonic() < deadline, "a child outlived the second Ctrl-C"
        time.sleep(0.1)


def test_a_killed_launcher_takes_its_children_with_it(launcher):
    """SIGKILL cannot be caught: the children, in process groups of their own, get SIGTERM from
    the kernel when their parent dies (parent-death signal) and free the ports."""
    launcher.wait_for("ClearBG is ready.")
    children = launcher.children()
    grpc_port = int(launcher.output.split("gRPC  127.0.0.1:", 1)[1].split()[0])
    launcher.process.kill()
    launcher.process.wait()
    deadline = time.monotonic() + 20  # the server's grace (10 s) and its unwinding
    while not all(gone(pid) for pid in children):
        assert time.monotonic() < deadline, "a child outlived the launcher"
        time.sleep(0.2)
    # A process is a zombie a moment before the kernel has released its listening sockets
    # (seen on main too: a LISTEN socket with no owner for some milliseconds).
    while not (_port_free(launcher.http_port) and _port_free(grpc_port)):
        assert time.monotonic() < deadline, "the ports stayed taken after the children were gone"
        time.sleep(0.05)

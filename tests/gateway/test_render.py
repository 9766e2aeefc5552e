"""The launcher's pieces that need no running stack: rendering and start-up checks."""

from __future__ import annotations

import io
import os
import subprocess
import threading
from concurrent import futures

import grpc
import pytest

from service.launcher import Child, LaunchError, check_descriptor, find_envoy, render_envoy_config


def test_render_fills_every_placeholder_and_envoy_accepts_it(tmp_path):
    text = render_envoy_config(18080, 18051, 19901, descriptor=check_descriptor(), http_host="0.0.0.0")
    assert "$" not in text
    assert "port_value: 18080" in text and "port_value: 18051" in text and "port_value: 19901" in text
    config = tmp_path / "envoy.yaml"
    config.write_text(text)
    run = subprocess.run(
        [str(find_envoy()), "--mode", "validate", "-c", str(config), "--use-dynamic-base-id", "-l", "error"],
        capture_output=True, text=True, timeout=60,
    )
    assert run.returncode == 0, run.stdout + run.stderr


def test_missing_descriptor_says_what_to_run(tmp_path):
    with pytest.raises(LaunchError, match="make gen"):
        check_descriptor(tmp_path / "clearbg.pb")


def test_render_with_several_servers_lists_each_endpoint(tmp_path):
    text = render_envoy_config(18080, 18051, descriptor=check_descriptor(), more_grpc_ports=(18052, 18053))
    assert all(f"port_value: {port} }}" in text for port in (18051, 18052, 18053))
    config = tmp_path / "envoy.yaml"
    config.write_text(text)
    run = subprocess.run(
        [str(find_envoy()), "--mode", "validate", "-c", str(config), "--use-dynamic-base-id", "-l", "error"],
        capture_output=True, text=True, timeout=60,
    )
    assert run.returncode == 0, run.stdout + run.stderr


@pytest.mark.parametrize("bound", [20.0, 45.5])
def test_the_gateway_never_cuts_a_call_the_server_admitted(bound):
    """The removal routes' timeout and the stream idle timeout (a queued call sends nothing)
    are the admission bound plus the longest an admitted call may take in the engine."""
    import math
    import re

    from service.launcher import SERVICE_ALLOWANCE_S

    text = render_envoy_config(18080, 18051, descriptor=check_descriptor(), max_queue_wait_s=bound)
    expected = math.ceil(bound + SERVICE_ALLOWANCE_S)
    assert SERVICE_ALLOWANCE_S >= 240  # a 50 MP photo, two at once, on the slowest CPU path
    idle = re.search(r"stream_idle_timeout: (\d+)s", text)
    removal = re.search(r"path: /v1\.0/removebg \}\s+route: \{ cluster: grpc_server, timeout: (\d+)s", text)
    grpc = re.search(r"prefix: application/grpc \}\s+route: \{ cluster: grpc_server, timeout: (\d+)s", text)
    assert [int(m.group(1)) for m in (idle, removal, grpc)] == [expected] * 3


def test_retries_only_what_never_reached_a_server():
    """A paid call that reached a server may have taken its credit: retrying it elsewhere could
    charge twice. Only refused connections and streams, and resets before the request went
    out, are retried, each on another server."""
    import yaml

    config = yaml.safe_load(render_envoy_config(18080, 18051, descriptor=check_descriptor(), more_grpc_ports=(18052,)))
    manager = config["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]["typed_config"]
    (host,) = manager["route_config"]["virtual_hosts"]
    policy = host["retry_policy"]
    assert set(policy["retry_on"].split(",")) == {"connect-failure", "refused-stream", "reset-before-request"}
    assert [p["name"] for p in policy["retry_host_predicate"]] == ["envoy.retry_host_predicates.previous_hosts"]
    routes = [r for r in host["routes"] if "route" in r]
    assert routes and not [r for r in routes if "retry_policy" in r["route"]]  # no route widens it


def test_free_port_never_hands_out_a_port_twice(monkeypatch):
    """The kernel may give a just-closed port again; a stack whose REST and gRPC ports came out
    the same started with Envoy and the server sharing one."""
    from service import launcher

    given = iter([41001, 41001, 41002])

    class Socket:
        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

        def bind(self, address):
            self.port = next(given)

        def getsockname(self):
            return ("127.0.0.1", self.port)

    monkeypatch.setattr(launcher, "_given_ports", set())
    monkeypatch.setattr(launcher.socket, "socket", Socket)
    assert [launcher.free_port(), launcher.free_port()] == [41001, 41002]


@pytest.mark.parametrize(
    ("ports", "message"),
    [
        (dict(http_port=18080, grpc_port=18080), "CLEARBG_HTTP_PORT and CLEARBG_GRPC_PORT are both 18080"),
        (dict(http_port=18080, grpc_port=18051, more_grpc_ports=(18051,)),
         "CLEARBG_GRPC_PORT and gRPC port of server 2 are both 18051"),
        (dict(http_port=18080, grpc_port=18051, metrics_port=18080),
         "CLEARBG_HTTP_PORT and metrics port of server 1 are both 18080"),
        (dict(http_port=18080, grpc_port=18051, admin_port=18051),
         "CLEARBG_GRPC_PORT and CLEARBG_ENVOY_ADMIN_PORT are both 18051"),
    ],
)
def test_two_listeners_on_one_port_do_not_start(ports, message):
    from service.launcher import Stack

    stack = Stack(env={}, out=None, **ports)
    with pytest.raises(LaunchError, match=message):
        stack.start()
    assert stack.children == [] and stack.workdir is None


def test_envoy_will_not_share_a_port_another_process_holds(tmp_path):
    """Envoy sets SO_REUSEPORT by default: it would start and split the port's connections."""
    import socket

    from service.launcher import Child, envoy_command, free_port

    with socket.socket() as holder:
        holder.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        config = tmp_path / "envoy.yaml"
        config.write_text(render_envoy_config(port, free_port(), descriptor=check_descriptor()))
        out = io.StringIO()
        envoy = Child.start("envoy", envoy_command(find_envoy(), config, "error"), {}, out)
        try:
            code = envoy.process.wait(60)
            envoy.pump.join(10)
        finally:
            envoy.kill()
    assert code != 0
    assert "Address already in use" in out.getvalue()


def test_children_start_cleanly_while_grpc_calls_run_in_the_launcher():
    """The tests start stacks from processes that run gRPC; a child forked by Python from such
    a process (a Popen preexec_fn) crashed in gRPC's fork handlers when another thread was in a
    call, most such starts. Every start must reach its program."""
    server = grpc.server(futures.ThreadPoolExecutor(4))
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    stop = threading.Event()

    def call_in_a_loop() -> None:
        while not stop.is_set():
            with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
                try:
                    channel.unary_unary("/clearbg.test.v1.Nothing/Call")(b"", timeout=0.2)
                except grpc.RpcError:
                    pass

    callers = [threading.Thread(target=call_in_a_loop, daemon=True) for _ in range(4)]
    for caller in callers:
        caller.start()
    try:
        codes = []
        for _ in range(100):
            child = Child.start("true", ["sh", "-c", "exit 7"], os.environ, out=None)
            codes.append(child.process.wait(10))
    finally:
        stop.set()
        for caller in callers:
            caller.join(5)
        server.stop(None)
    assert codes == [7] * 100

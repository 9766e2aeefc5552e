"""`python -m service.gateway`: Envoy alone, in front of servers elsewhere (a cluster's gateway
pods; deploy/kubernetes). The configuration is the one `make run` uses (gateway/envoy.yaml,
rendered by service/launcher.py), its servers found by DNS: CLEARBG_GATEWAY_UPSTREAM names a
host that resolves to every server (a headless Service), each health-checked on its own.

Settings: CLEARBG_GATEWAY_UPSTREAM (host:port, required), CLEARBG_HTTP_HOST (0.0.0.0 here),
CLEARBG_HTTP_PORT (8080), CLEARBG_ENVOY_ADMIN_PORT (9901, loopback only) and
CLEARBG_MAX_QUEUE_WAIT_S, which must be the servers' own (the removal routes' timeouts follow it).
"""

from __future__ import annotations

import os
import pathlib
import sys
import tempfile
from collections.abc import Mapping

from service.config import Settings
from service.launcher import LaunchError, check_descriptor, envoy_command, find_envoy, render_envoy_config


def gateway_config(env: Mapping[str, str]) -> str:
    upstream = env.get("CLEARBG_GATEWAY_UPSTREAM", "").strip()
    host, _, port = upstream.rpartition(":")
    if not host or not port.isdigit():
        raise LaunchError(f"CLEARBG_GATEWAY_UPSTREAM must be host:port (the servers' headless Service), got {upstream!r}")
    try:
        settings = Settings.from_environ(env)
    except ValueError as exc:
        raise LaunchError(f"configuration error: {exc}") from None
    return render_envoy_config(
        settings.http_port, int(port), int(env.get("CLEARBG_ENVOY_ADMIN_PORT", "").strip() or 9901),
        descriptor=check_descriptor(), http_host=env.get("CLEARBG_HTTP_HOST", "").strip() or "0.0.0.0",
        grpc_host=host, max_queue_wait_s=settings.max_queue_wait_s, cluster_type="STRICT_DNS",
    )


def main() -> int:
    try:
        text = gateway_config(os.environ)
        envoy = find_envoy()
    except LaunchError as exc:
        print(f"clearbg gateway: {exc}", file=sys.stderr)
        return 2
    config = pathlib.Path(tempfile.mkdtemp(prefix="clearbg-gateway-")) / "envoy.yaml"
    config.write_text(text)
    argv = envoy_command(envoy, config, os.environ.get("CLEARBG_ENVOY_LOG_LEVEL", "warn"))
    os.execv(argv[0], argv)  # Envoy becomes the process: the orchestrator's signals reach it
    return 0  # not reached


if __name__ == "__main__":
    sys.exit(main())

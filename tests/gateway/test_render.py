"""The launcher's pieces that need no running stack: rendering and start-up checks."""

from __future__ import annotations

import subprocess

import pytest

from service.launcher import LaunchError, check_descriptor, find_envoy, render_envoy_config


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

"""deploy/: the container recipe and the Kubernetes manifests, checked offline.

No container engine runs here, so the image is not built; its Dockerfile's shape is checked
(multi-stage, the model prepared in the build stage, a non-root user, a health check). The
manifests are validated, strictly (no unknown fields), against the Kubernetes API schemas that
kubernetes-validate bundles (no network), and against what the service really does: their
settings parse as the servers' and the gateway's, the gateway they configure passes Envoy's own
validation, the drain fits the pod's grace period, and the ports the NetworkPolicy keeps
internal are the ones the containers open.
"""

from __future__ import annotations

import pathlib
import re
import subprocess

import kubernetes_validate
import pytest
import yaml

from service.config import Settings
from service.gateway import gateway_config
from service.launcher import STOP_MARGIN_S, find_envoy

ROOT = pathlib.Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
MANIFESTS = sorted((DEPLOY / "kubernetes").glob("*.yaml"))
KUBERNETES_VERSION = "1.30.0"  # the oldest we claim; the manifests must hold from it on


def documents() -> list[dict]:
    return [doc for path in MANIFESTS for doc in yaml.safe_load_all(path.read_text()) if doc]


def find(kind: str, name: str) -> dict:
    (found,) = [d for d in documents() if d["kind"] == kind and d["metadata"]["name"] == name]
    return found


@pytest.mark.parametrize("version", [KUBERNETES_VERSION, kubernetes_validate.latest_version()])
def test_every_manifest_is_valid_for_kubernetes(version):
    docs = documents()
    assert {d["kind"] for d in docs} >= {
        "Deployment", "Service", "PodDisruptionBudget", "HorizontalPodAutoscaler", "NetworkPolicy", "ConfigMap", "Secret",
    }
    for doc in docs:
        kubernetes_validate.validate(doc, version, strict=True)  # raises ValidationError


def test_an_invalid_manifest_is_refused():
    """The check itself can fail: a misspelt field is caught."""
    broken = find("Deployment", "clearbg-server")
    broken["spec"]["template"]["spec"]["containers"][0]["readinesProbe"] = {"grpc": {"port": 50051}}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, KUBERNETES_VERSION, strict=True)


def settings_env() -> dict[str, str]:
    env = dict(find("ConfigMap", "clearbg-config")["data"])
    env.update(find("Secret", "clearbg-secrets")["stringData"])
    return env


def test_the_settings_are_the_servers_own():
    settings = Settings.from_environ(settings_env())
    assert settings.grpc_host == "0.0.0.0" and settings.grpc_port == 50051
    assert settings.database_url.startswith("postgresql://")  # several servers: one shared database
    assert settings.redis_url  # and one shared rate limit


def test_the_gateway_they_configure_passes_envoys_validation(tmp_path):
    text = gateway_config(settings_env())
    assert "type: STRICT_DNS" in text and "clearbg-server-grpc" in text
    config = tmp_path / "envoy.yaml"
    config.write_text(text)
    run = subprocess.run(
        [str(find_envoy()), "--mode", "validate", "-c", str(config), "--use-dynamic-base-id", "-l", "error"],
        capture_output=True, text=True, timeout=60,
    )
    assert run.returncode == 0, run.stdout + run.stderr


def test_servers_are_ready_on_health_and_drain_within_their_grace():
    deployment = find("Deployment", "clearbg-server")
    pod = deployment["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert container["readinessProbe"]["grpc"]["port"] == ports["grpc"]  # the gRPC health service
    assert container["startupProbe"]["grpc"]["port"] == ports["grpc"]
    pause = int(container["lifecycle"]["preStop"]["exec"]["command"][-1])
    grace = Settings.from_environ(settings_env()).shutdown_grace_s
    assert pause + grace + STOP_MARGIN_S <= pod["terminationGracePeriodSeconds"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    for selector in (deployment["spec"]["selector"]["matchLabels"],
                     find("Service", "clearbg-server-grpc")["spec"]["selector"],
                     find("PodDisruptionBudget", "clearbg-server")["spec"]["selector"]["matchLabels"]):
        assert selector.items() <= labels.items()
    assert find("Service", "clearbg-server-grpc")["spec"]["clusterIP"] == "None"  # Envoy sees every pod


def test_the_autoscaler_follows_the_queue():
    hpa = find("HorizontalPodAutoscaler", "clearbg-server")
    assert hpa["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": "clearbg-server"}
    (metric,) = hpa["spec"]["metrics"]
    assert metric["type"] == "Pods" and metric["pods"]["metric"]["name"] == "clearbg_queue_depth"
    assert hpa["spec"]["minReplicas"] >= find("PodDisruptionBudget", "clearbg-server")["spec"]["minAvailable"] + 1


def test_the_network_policy_keeps_grpc_and_metrics_internal():
    server = find("Deployment", "clearbg-server")["spec"]["template"]
    ports = {p["containerPort"] for p in server["spec"]["containers"][0]["ports"]}
    policy = find("NetworkPolicy", "clearbg-server")["spec"]
    assert policy["podSelector"]["matchLabels"].items() <= server["metadata"]["labels"].items()
    assert policy["policyTypes"] == ["Ingress"]
    opened = {port["port"]: rule["from"] for rule in policy["ingress"] for port in rule["ports"]}
    assert set(opened) == ports  # every port the server opens is governed, and no other
    for sources in opened.values():
        assert sources and all(s.get("podSelector") or s.get("namespaceSelector") for s in sources)  # never "anyone"
    gateway_labels = find("Deployment", "clearbg-gateway")["spec"]["template"]["metadata"]["labels"]
    grpc_from = opened[50051]
    assert any(s.get("podSelector", {}).get("matchLabels", {}).items() <= gateway_labels.items()
               for s in grpc_from if "podSelector" in s)


def dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    joined = re.sub(r"\\\n", " ", (DEPLOY / "Dockerfile").read_text())
    lines = [line.strip() for line in joined.splitlines() if line.strip() and not line.strip().startswith("#")]
    return [(line.split(None, 1)[0].upper(), line.split(None, 1)[1] if " " in line else "") for line in lines]


def test_the_dockerfile_is_multi_stage_non_root_with_the_model_built_in_and_a_health_check():
    instructions = dockerfile_instructions()
    stages = [i for i, (op, _) in enumerate(instructions) if op == "FROM"]
    assert len(stages) >= 2, "multi-stage"
    build, final = instructions[stages[0]:stages[-1]], instructions[stages[-1]:]
    assert any(op == "RUN" and "python -m modelprep" in args for op, args in build)  # prepared at build time
    assert any(op == "COPY" and "--from=build" in args and "/opt/clearbg/cache" in args for op, args in final)
    users = [args for op, args in final if op == "USER"]
    assert users and users[-1].split(":")[0] not in ("0", "root")
    (check,) = [args for op, args in final if op == "HEALTHCHECK"]
    assert "CMD" in check and "service.healthprobe" in check
    (command,) = [args for op, args in final if op == "CMD"]
    assert "exec python -m service" in command  # the server is PID 1: SIGTERM drains it
    assert not any(op == "RUN" and "modelprep" in args for op, args in final)  # nothing fetched at run time but a re-measure

"""`python -m service.healthprobe`: exit 0 when this machine's server says SERVING on the
standard gRPC health service (the model loaded, not shutting down), 1 otherwise. For a
container's HEALTHCHECK (deploy/Dockerfile); Kubernetes asks the same service natively."""

from __future__ import annotations

import os
import sys

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc


def serving(address: str, timeout_s: float = 3.0) -> bool:
    with grpc.insecure_channel(address) as channel:
        try:
            answer = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(service=""), timeout=timeout_s)
        except grpc.RpcError:
            return False
    return answer.status == health_pb2.HealthCheckResponse.SERVING


def main() -> int:
    port = os.environ.get("CLEARBG_GRPC_PORT", "").strip() or "50051"
    return 0 if serving(f"127.0.0.1:{port}") else 1


if __name__ == "__main__":
    sys.exit(main())

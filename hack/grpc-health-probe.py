#!/usr/bin/env python3
"""Exit 0 when a gRPC health service answers SERVING (Tilt's readiness probes; Kubernetes does the
same with `grpc:` probes).

    python hack/grpc-health-probe.py 127.0.0.1:2391 readiness     # a shard service replica is ready
    python hack/grpc-health-probe.py 127.0.0.1:2379               # kv-router (service "")
"""
from __future__ import annotations

import sys

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc


def main() -> int:
    if len(sys.argv) not in (2, 3):
        print(__doc__, file=sys.stderr)
        return 2
    address, service = sys.argv[1], sys.argv[2] if len(sys.argv) == 3 else ""
    with grpc.insecure_channel(address) as channel:
        try:
            answer = health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(service=service), timeout=5)
        except grpc.RpcError as err:
            print(f"{address} {service!r}: {err.code().name} {err.details()}", file=sys.stderr)
            return 1
    status = health_pb2.HealthCheckResponse.ServingStatus.Name(answer.status)
    if answer.status != health_pb2.HealthCheckResponse.SERVING:
        print(f"{address} {service!r}: {status}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""One gRPC server set-up for every KubeFabric service: etcd's message limits and keepalive
policy (DESIGN §6), telemetry on every call, grpc.health.v1, and listening with a one-line
StartupError when an address cannot be bound.

Invariants:
- A server receives messages up to the service's request limit plus etcd's framing allowance
  (kubefabric.rpc.limits); what it sends is never limited.
- Clients may ping every `Keepalive.min_time_s` even without calls (kube-apiserver pings every
  30 s) and are never sent GOAWAY for pinging; a second server on a bound port fails to start
  instead of sharing it, except the processes of one `kubefabric serve --workers N`, which
  share their client ports on purpose (reuse_port; their parent checks the ports are free first).
"""
from __future__ import annotations

import errno
import socket
from dataclasses import dataclass
from typing import Iterable

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from kubefabric.rpc.limits import DEFAULT_MAX_REQUEST_BYTES, max_message_bytes
from kubefabric.rpc.startup import StartupError
from kubefabric.telemetry import instrument_server

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING
LIVENESS = ("", "liveness")  # SERVING while the process runs


@dataclass(frozen=True)
class Keepalive:
    """etcd's --grpc-keepalive-min-time, --grpc-keepalive-interval, --grpc-keepalive-timeout."""
    min_time_s: float = 5.0
    interval_s: float = 7200.0
    timeout_s: float = 20.0


def server_options(max_request_bytes: int, keepalive: Keepalive = Keepalive(),
                   reuse_port: bool = False) -> list[tuple[str, int]]:
    """reuse_port: share the listening ports with other processes of this service (SO_REUSEPORT:
    the kernel spreads new connections over them); off, a second server on a bound port fails."""
    return [
        ("grpc.max_receive_message_length", max_message_bytes(max_request_bytes)),
        ("grpc.max_send_message_length", -1),
        ("grpc.so_reuseport", 1 if reuse_port else 0),
        ("grpc.max_concurrent_streams", 2 ** 31 - 1),
        ("grpc.keepalive_time_ms", int(keepalive.interval_s * 1000)),
        ("grpc.keepalive_timeout_ms", int(keepalive.timeout_s * 1000)),
        ("grpc.keepalive_permit_without_calls", 1),
        ("grpc.http2.min_ping_interval_without_data_ms", int(keepalive.min_time_s * 1000)),
        ("grpc.http2.max_ping_strikes", 0),
    ]


class Health(health.aio.HealthServicer):
    """grpc.health.v1 with the names a service answers for set together."""

    async def mark(self, names: Iterable[str], serving: bool) -> None:
        for name in names:
            await self.set(name, SERVING if serving else NOT_SERVING)


def make_server(max_request_bytes: int = DEFAULT_MAX_REQUEST_BYTES, *,
                keepalive: Keepalive = Keepalive(),
                health_service: Health | None = None,
                reuse_port: bool = False) -> tuple[grpc.aio.Server, Health]:
    """A grpc.aio server with KubeFabric's options, every call instrumented and a health service
    (`health_service`, or a new Health) registered; add the service's own servicers, then
    `listen`. reuse_port: see server_options."""
    server = instrument_server(grpc.aio.server(
        options=server_options(max_request_bytes, keepalive, reuse_port)))
    health_service = health_service or Health()
    health_pb2_grpc.add_HealthServicer_to_server(health_service, server)
    return server, health_service


async def listen(server: grpc.aio.Server, ports: Iterable[tuple[str, grpc.ServerCredentials | None]],
                 flag: str) -> None:
    """Add the (host:port, credentials or None for plaintext) ports and start the server.
    StartupError names `flag` and says why an address cannot be bound, in the operating
    system's words (grpc does not say)."""
    addresses = []
    try:
        for address, credentials in ports:
            addresses.append(address)
            if credentials is None:
                server.add_insecure_port(address)
            else:
                server.add_secure_port(address, credentials)
        await server.start()
    except RuntimeError as err:
        why = bind_problem(addresses) or f"{', '.join(addresses)}: {err}"
        raise StartupError(f"{flag}: cannot listen on {why}") from None


def bind_problem(addresses: Iterable[str]) -> str | None:
    """Why binding one of `addresses` (host:port, [v6]:port) fails, if it does."""
    for address in addresses:
        host, _, port = address.rpartition(":")
        family = socket.AF_INET6 if host.startswith("[") else socket.AF_INET
        with socket.socket(family, socket.SOCK_STREAM) as s:
            try:
                s.bind((host.strip("[]"), int(port)))
            except OSError as err:
                hint = " (another etcd or KubeFabric?)" if err.errno == errno.EADDRINUSE else ""
                return f"{host}:{port}: {err.strerror.lower()}{hint}"
            except (ValueError, OverflowError):
                return f"{address}: not a host:port"
    return None

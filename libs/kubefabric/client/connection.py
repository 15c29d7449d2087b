"""Channels to one etcd v3 endpoint list, and unary calls that fail over between endpoints.

Invariants:
- One grpc.aio channel per endpoint, made on first use; calls go to the endpoint that last
  answered, and move to the next one when it is unreachable.
- A read is retried on the next endpoint until `retry_for` runs out. A write is retried only
  when the failure proves it was never sent (no connection could be made); any other failure of
  a write reaches the caller, who decides (a write guarded by mod_revision can simply be read
  back and retried).
"""
from __future__ import annotations

import asyncio
import logging
import random
import time

import grpc

from kubefabric.proto.etcdserverpb import rpc_pb2_grpc as rpc
from kubefabric.proto.kubefabric.query.v1 import query_pb2_grpc
from kubefabric.rpc.channel import never_reached

from .errors import ClientError, Unavailable, from_rpc

# services beside etcd's that kv-router serves on the same endpoint
_KUBEFABRIC_STUBS = {"Query": query_pb2_grpc.QueryStub}

log = logging.getLogger("kubefabric.client")

CALL_TIMEOUT_S = 10.0
RETRY_FOR_S = 15.0

_OPTIONS = [("grpc.max_receive_message_length", -1), ("grpc.max_send_message_length", -1),
            ("grpc.keepalive_time_ms", 10_000), ("grpc.keepalive_timeout_ms", 5_000),
            ("grpc.keepalive_permit_without_calls", 1),
            ("grpc.initial_reconnect_backoff_ms", 200), ("grpc.max_reconnect_backoff_ms", 2_000)]


def parse_endpoints(text: str | list[str]) -> tuple[list[str], bool]:
    """'http://h:p,https://h:p' or ['h:p', ...] -> (['h:p', ...], tls). Schemes: http, https,
    grpc (plaintext), grpcs; all endpoints must agree on TLS."""
    parts = text.split(",") if isinstance(text, str) else list(text)
    out, schemes = [], set()
    for part in (p.strip() for p in parts):
        if not part:
            continue
        scheme = "http"
        if "://" in part:
            scheme, part = part.split("://", 1)
            if scheme not in ("http", "https", "grpc", "grpcs"):
                raise ValueError(f"unsupported endpoint scheme {scheme!r} (use http://host:port "
                                 "or https://host:port)")
        part = part.rstrip("/")
        if ":" not in part:
            raise ValueError(f"endpoint {part!r} has no port (http://host:port)")
        schemes.add(scheme in ("https", "grpcs"))
        out.append(part)
    if not out:
        raise ValueError("no endpoint given (http://host:port)")
    if len(schemes) > 1:
        raise ValueError("endpoints mix TLS and plaintext schemes: use one kind")
    return out, schemes.pop()


class Connection:
    """tls: None for plaintext, or an object with credentials() and options() (the client side
    of kubefabric's TLS settings: a CA, optionally a client certificate)."""

    def __init__(self, endpoints: list[str], tls=None, call_timeout: float = CALL_TIMEOUT_S,
                 retry_for: float = RETRY_FOR_S):
        if not endpoints:
            raise ValueError("an etcd client needs at least one endpoint")
        self.endpoints = list(endpoints)
        self.tls = tls
        self.call_timeout = call_timeout
        self.retry_for = retry_for
        self.current = 0
        self._channels: dict[int, grpc.aio.Channel] = {}
        self._stubs: dict[tuple[int, str], object] = {}

    def channel(self, index: int | None = None) -> grpc.aio.Channel:
        i = self.current if index is None else index
        ch = self._channels.get(i)
        if ch is None:
            target = self.endpoints[i]
            if self.tls is None:
                ch = grpc.aio.insecure_channel(target, options=_OPTIONS)
            else:
                ch = grpc.aio.secure_channel(target, self.tls.credentials(),
                                             options=_OPTIONS + list(self.tls.options()))
            self._channels[i] = ch
        return ch

    def stub(self, service: str, index: int | None = None):
        """The generated stub of `service` (KV, Watch, Lease, Maintenance, Cluster, and
        kv-router's Query) on the current endpoint (or endpoint `index`)."""
        i = self.current if index is None else index
        key = (i, service)
        s = self._stubs.get(key)
        if s is None:
            factory = _KUBEFABRIC_STUBS.get(service) or getattr(rpc, f"{service}Stub")
            s = factory(self.channel(i))
            self._stubs[key] = s
        return s

    def failover(self, failed: int) -> None:
        """Endpoint `failed` did not answer: later calls go to the next one."""
        if self.current == failed and len(self.endpoints) > 1:
            self.current = (failed + 1) % len(self.endpoints)
            log.info("etcd endpoint %s unreachable; using %s", self.endpoints[failed],
                     self.endpoints[self.current])

    async def call(self, service: str, method: str, request, *, write: bool = False,
                   what: str = "", timeout: float | None = None, metadata=None):
        """One unary call with failover (module docstring); raises ClientError."""
        deadline = time.monotonic() + self.retry_for
        delay = 0.05
        while True:
            index = self.current
            fn = getattr(self.stub(service, index), method)
            try:
                return await fn(request, timeout=timeout or self.call_timeout, metadata=metadata)
            except grpc.aio.AioRpcError as err:
                retriable = err.code() == grpc.StatusCode.UNAVAILABLE and (
                    not write or never_reached(err))
                if not retriable or time.monotonic() + delay > deadline:
                    raise from_rpc(err, what or f"{service}.{method}") from None
                self.failover(index)
                await asyncio.sleep(delay * (0.5 + random.random()))
                delay = min(delay * 2, 1.0)

    async def close(self) -> None:
        channels, self._channels, self._stubs = list(self._channels.values()), {}, {}
        for ch in channels:
            await ch.close()


__all__ = ["Connection", "parse_endpoints", "ClientError", "Unavailable"]

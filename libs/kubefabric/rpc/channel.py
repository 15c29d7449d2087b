"""Channels between KubeFabric services (kv-router → shard services and watch-hubs, a replica →
its leader, the services that use the etcd API): how an endpoint list is written, the options
every internal channel has, and what a failed call means.

Invariants: an internal channel never limits message sizes (the server in front already applied
the client's request limit) and pings every 10 s even when idle, so a dead peer is noticed
within seconds instead of at the next call.
"""
from __future__ import annotations

import grpc

from kubefabric.etcd import errors
from kubefabric.etcd.errors import EtcdError

# grpc's own words for a call that never left this process: no connection could be made
_NOT_CONNECTED = ("failed to connect", "connection refused", "dns resolution failed", "no connection")

CHANNEL_OPTIONS = [("grpc.max_receive_message_length", -1), ("grpc.max_send_message_length", -1),
                   ("grpc.keepalive_time_ms", 10_000), ("grpc.keepalive_permit_without_calls", 1)]


def parse_endpoints(text: str) -> list[str]:
    """grpc://host:port[,grpc://host:port...] -> ["host:port", ...] (the scheme is required:
    the flags' own checker, config.Endpoints, has said so at start-up already)."""
    out = []
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        scheme, sep, part = part.partition("://")
        if not sep:
            raise ValueError(f"endpoint {scheme!r} has no scheme (use grpc://host:port)")
        if scheme != "grpc":
            raise ValueError(f"unsupported endpoint scheme {scheme!r} (use grpc://host:port)")
        if ":" not in part:
            raise ValueError(f"endpoint {part!r} has no port (grpc://host:port)")
        out.append(part.rstrip("/"))
    if not out:
        raise ValueError("no endpoint given (grpc://host:port)")
    return out


def status_error(err: grpc.aio.AioRpcError) -> EtcdError:
    """What a failed call ended with, as an EtcdError: the canonical instance when the peer
    answered one of etcd's (or KubeFabric's) fixed errors, so callers compare with `is`."""
    return errors.from_status(err.code(), err.details() or "")


def never_reached(err: grpc.aio.AioRpcError) -> bool:
    """The call certainly did not reach the peer (no connection could be made), so even a write
    may be sent again. grpc reports this only in its status text, read here and nowhere else."""
    details = (err.details() or "").lower()
    return err.code() == grpc.StatusCode.UNAVAILABLE and any(p in details for p in _NOT_CONNECTED)


def open_channel(endpoint: str, tls=None) -> grpc.aio.Channel:
    """A channel to host:port; tls: a ClientTLS (credentials() and options()), None: plaintext."""
    if tls is None:
        return grpc.aio.insecure_channel(endpoint, options=CHANNEL_OPTIONS)
    return grpc.aio.secure_channel(endpoint, tls.credentials(), options=CHANNEL_OPTIONS + tls.options())

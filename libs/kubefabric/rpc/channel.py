"""Channels between KubeFabric services (kv-router → shard services and watch-hubs): how an
endpoint list is written and the options every internal channel has.

Invariants: an internal channel never limits message sizes (the server in front already applied
the client's request limit) and pings every 10 s even when idle, so a dead peer is noticed
within seconds instead of at the next call.
"""
from __future__ import annotations

import grpc

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


def open_channel(endpoint: str, tls=None) -> grpc.aio.Channel:
    """A channel to host:port; tls: a ClientTLS (credentials() and options()), None: plaintext."""
    if tls is None:
        return grpc.aio.insecure_channel(endpoint, options=CHANNEL_OPTIONS)
    return grpc.aio.secure_channel(endpoint, tls.credentials(), options=CHANNEL_OPTIONS + tls.options())

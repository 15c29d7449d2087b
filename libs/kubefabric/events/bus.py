"""Names and connections on the NATS event bus (DESIGN §5).

Per shard <name> (a topology shard name: [a-z0-9_-], so a valid NATS token):
- JetStream stream KF_<name> holds subject kf.<name>.events: one message per published batch of
  committed txns (kubefabric.events.v1.ShardEvents), deduplicated by Nats-Msg-Id
  <name>:<cluster id>:<rev> (the cluster id: a recreated database never collides with the old one).
- kf.<name>.heartbeat (core NATS): ShardEvents without commits, at least every HEARTBEAT_S and
  whenever the shard's closed revision moves without a txn.
- kf.clock (core NATS): the highest revision a hub has seen, as decimal text; shard leaders
  sync their clocks to it so idle shards close revisions as fast as busy ones (DESIGN §3.2).
"""
from __future__ import annotations

import asyncio
import logging
import time
from urllib.parse import urlparse

from kubefabric.rpc.startup import StartupError

log = logging.getLogger("kubefabric.events")

HEARTBEAT_S = 0.1
CLOCK_SUBJECT = "kf.clock"
DEDUPE_WINDOW_S = 120.0
WARN_EVERY_S = 30.0  # a connection error repeated while NATS stays unreachable is logged this often


def events_subject(shard: str) -> str:
    return f"kf.{shard}.events"


def heartbeat_subject(shard: str) -> str:
    return f"kf.{shard}.heartbeat"


def stream_name(shard: str) -> str:
    return f"KF_{shard}"


class BusError(StartupError):
    """A --nats-* setting that cannot work."""


def check_url(url: str, flag: str = "--nats-url") -> list[str]:
    """nats://host:port[,nats://host:port] -> the server list nats-py takes; clear errors."""
    servers = [u.strip() for u in url.split(",") if u.strip()]
    if not servers:
        raise BusError(f"{flag}: no NATS server given (nats://host:port)")
    for server in servers:
        parsed = urlparse(server)
        if parsed.scheme not in ("nats", "tls") or not parsed.hostname:
            raise BusError(f"{flag}: {server!r} is not a NATS URL (nats://host:port or tls://host:port)")
        try:
            parsed.port
        except ValueError:
            raise BusError(f"{flag}: {server!r} has an invalid port") from None
    return servers


async def connect(url: str, client_name: str, tls=None):
    """A NATS connection that reconnects forever (the services outlive NATS restarts); it waits
    for the first connection too, logging why it fails (a repeated reason every WARN_EVERY_S).
    tls: a kubefabric.tls.nats.NatsTLS (from_flags), or None for plaintext; natsclient.py says
    what holds on every (re)connect."""
    from .natsclient import Client

    servers = check_url(url)
    redacted = ", ".join(_redact(s) for s in servers)
    warned: dict[type, float] = {}  # kind of connection error -> when it was last a warning

    async def disconnected():
        log.warning("NATS %s: disconnected; reconnecting", redacted)

    async def reconnected():
        warned.clear()
        log.info("NATS %s: reconnected", redacted)

    async def error(exc):
        # nats-py retries failed (re)connects by itself and reports each failure only here:
        # each kind is a warning (why the service is not on NATS) at most every WARN_EVERY_S;
        # errors while connected stay debug
        text, now = str(exc) or type(exc).__name__, time.monotonic()
        if (nc is None or not nc.is_connected) and now - warned.get(type(exc), -WARN_EVERY_S) >= WARN_EVERY_S:
            warned[type(exc)] = now
            log.warning("NATS %s: %s (retrying)", redacted, text)
        else:
            log.debug("NATS %s: %s", redacted, text)

    nc = None
    backoff = 0.2
    while True:
        try:
            nc = Client(tls)
            await nc.connect(
                servers=servers, name=client_name, allow_reconnect=True,
                max_reconnect_attempts=-1, reconnect_time_wait=0.25, connect_timeout=2,
                ping_interval=5, max_outstanding_pings=2, disconnected_cb=disconnected,
                reconnected_cb=reconnected, error_cb=error)
            break
        except Exception as exc:  # nats-py raises several kinds; all mean "not yet"
            log.warning("NATS %s: cannot connect (%s); retrying in %.1fs", redacted,
                        str(exc) or type(exc).__name__, backoff)
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, 5.0)
    log.info("NATS %s: connected (%s)", redacted, tls.describe() if tls is not None else "plaintext")
    return nc


def _redact(server: str) -> str:
    parsed = urlparse(server)
    if parsed.password:
        return server.replace(f":{parsed.password}@", ":***@")
    return server

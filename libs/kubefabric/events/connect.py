"""connect(): a NATS connection for a service (shard leader, watch-hub) that reconnects forever."""
from __future__ import annotations

import asyncio
import logging
import time
from urllib.parse import urlparse

from .bus import check_url
from .natsclient import Client

log = logging.getLogger("kubefabric.events")

WARN_EVERY_S = 30.0  # a connection error repeated while NATS stays unreachable is logged this often


async def connect(url: str, client_name: str, tls=None):
    """A NATS connection that reconnects forever (the services outlive NATS restarts); it waits
    for the first connection too, logging why it fails (a repeated reason every WARN_EVERY_S).
    tls: a kubefabric.tls.nats.NatsTLS (from_flags), or None for plaintext; natsclient.py says
    what holds on every (re)connect."""
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

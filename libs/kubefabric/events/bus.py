"""Names on the NATS event bus (DESIGN §5) and checks of --nats-url; the connection itself is
kubefabric.events.connect (this module is loaded while the command line is built: no nats-py).

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

from urllib.parse import urlparse

from kubefabric.rpc.startup import StartupError

HEARTBEAT_S = 0.1
CLOCK_SUBJECT = "kf.clock"
DEDUPE_WINDOW_S = 120.0


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

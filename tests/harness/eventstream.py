"""Reading the event bus from tests: a shard's stream and heartbeats, with nats-py."""
from __future__ import annotations

import asyncio

from kubefabric.events.bus import events_subject, heartbeat_subject, stream_name
from kubefabric.proto.kubefabric.events.v1.events_pb2 import ShardEvents


async def _stream(url: str, shard: str) -> list[tuple[dict, ShardEvents]]:
    import nats
    from nats.js.api import DeliverPolicy

    nc = await nats.connect(url)
    try:
        js = nc.jetstream()
        info = await js.stream_info(stream_name(shard))
        out = []
        if info.state.messages:
            sub = await js.subscribe(events_subject(shard), ordered_consumer=True,
                                     deliver_policy=DeliverPolicy.ALL)
            while len(out) < info.state.messages:
                msg = await sub.next_msg(timeout=5)
                out.append((dict(msg.headers or {}), ShardEvents.FromString(msg.data)))
        return out
    finally:
        await nc.close()


def stream_messages(url: str, shard: str) -> list[tuple[dict, ShardEvents]]:
    """Every message of the shard's stream: (headers, ShardEvents), in stream order."""
    return asyncio.run(_stream(url, shard))


async def _heartbeats(url: str, shard: str, seconds: float) -> list[ShardEvents]:
    import nats

    nc = await nats.connect(url)
    got: list[ShardEvents] = []
    try:
        async def on(msg):
            got.append(ShardEvents.FromString(msg.data))
        await nc.subscribe(heartbeat_subject(shard), cb=on)
        await asyncio.sleep(seconds)
        return got
    finally:
        await nc.close()


def heartbeats(url: str, shard: str, seconds: float) -> list[ShardEvents]:
    return asyncio.run(_heartbeats(url, shard, seconds))


async def _publish(url: str, subject: str, data: bytes) -> None:
    import nats

    nc = await nats.connect(url)
    try:
        await nc.publish(subject, data)
        await nc.flush()
    finally:
        await nc.close()


def publish(url: str, subject: str, data: bytes) -> None:
    asyncio.run(_publish(url, subject, data))


def committed_revisions(messages) -> list[int]:
    """The txn revisions in the stream, deduplicated, in order (consumers drop repeats)."""
    seen, out = 0, []
    for _, m in messages:
        for c in m.commits:
            if c.rev > seen:
                out.append(c.rev)
                seen = c.rev
    return out


def check_chain(messages) -> None:
    """Each message continues the previous one (prev_rev <= the previous committed_rev) and
    its commits lie in (prev_rev, committed_rev]."""
    last = None
    for _, m in messages:
        if last is not None:
            assert m.prev_rev <= last, f"gap: message after {last} starts after {m.prev_rev}"
        assert all(m.prev_rev < c.rev <= m.committed_rev for c in m.commits), m
        last = max(last or 0, m.committed_rev)

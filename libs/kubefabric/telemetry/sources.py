"""What the sampler reads: the state of kv-router's shards and watchers, and of a shard service
replica. Duck-typed on purpose (an embedded core Shard has `store`, a RemoteShard does not) so
these modules import nothing of the router or the shard core."""
from __future__ import annotations

from . import metrics as m


def _local_shard_gauges(name: str, shard) -> tuple[int, int]:
    """Gauges of a shard whose database this process holds; returns (size, in use)."""
    size, in_use = shard.db_size()
    m.shard_db_size.labels(name).set(size)
    m.quota_backend_bytes.set(shard.quota.quota_bytes)
    return size, in_use


def _set_role(name: str, role: str) -> None:
    for r in m.ROLES:
        m.shard_role.labels(name, r).set(1 if r == role else 0)


def router(surface, watch=None):
    """A sampler of kv-router: `surface` is what it serves (a core Shard, a RemoteShard or the
    routed shards), `watch` its WatchService."""

    if watch is not None:
        m.export(m.WATCH)

    def sample() -> None:
        m.current_revision.set(surface.state.committed)
        m.compact_revision.set(surface.state.compact_rev)
        shards = getattr(surface, "shards", None)
        if not isinstance(shards, dict):
            shards = {getattr(surface, "name", "default"): surface}
        size = in_use = 0
        local = False
        for name, shard in list(shards.items()):
            m.shard_committed_revision.labels(name).set(shard.state.committed)
            m.shard_compact_revision.labels(name).set(shard.state.compact_rev)
            if hasattr(shard, "store"):  # embedded: this process is its writer
                local = True
                s, u = _local_shard_gauges(name, shard)
                size, in_use = size + s, in_use + u
                _set_role(name, "leader" if shard.is_leader else "replica")
        if local:
            m.export(m.STORAGE)
            m.db_total_size.set(size)
            m.db_total_size_in_use.set(in_use)
            m.has_leader.set(1)
            m.is_leader.set(1)
        if watch is not None:
            streams = list(watch.streams)
            m.watch_streams.set(len(streams))
            m.watchers.set(sum(len(s.watchers) for s in streams))
    return sample


def shard_node(node, name: str):
    """A sampler of one shard service replica (a ShardNode)."""
    m.export(m.STORAGE)

    def sample() -> None:
        _set_role(name, node.role)
        m.is_leader.set(1 if node.role == "leader" else 0)
        m.has_leader.set(1 if node.role == "leader" or node.leader_address else 0)
        shard = node.shard
        if shard is None:
            return
        m.shard_committed_revision.labels(name).set(shard.state.committed)
        m.shard_compact_revision.labels(name).set(shard.state.compact_rev)
        m.current_revision.set(shard.state.committed)
        m.compact_revision.set(shard.state.compact_rev)
        size, in_use = _local_shard_gauges(name, shard)
        m.db_total_size.set(size)
        m.db_total_size_in_use.set(in_use)
    return sample


def publisher(pub):
    """A sampler of a shard service's event publisher (kubefabric.events.publisher)."""
    m.export(m.EVENTS)

    def sample() -> None:
        m.events_published_revision.labels(pub.name).set(pub.published_to)
        m.events_published_txns.labels(pub.name).set(pub.published_txns)
    return sample


def hub(subscriptions):
    """A sampler of a watch-hub's shard subscriptions (kubefabric.events.subscriber)."""
    m.export(m.HUB)

    def sample() -> None:
        for sub in subscriptions:
            shard = sub.shard
            m.hub_feed_revision.labels(sub.name).set(shard.feed_committed)
            m.hub_feed_lag.labels(sub.name).set(max(0, shard.state.committed - shard.feed_committed))
            m.hub_messages.labels(sub.name).set(sub.received)
            m.hub_backfilled_txns.labels(sub.name).set(sub.backfilled_txns)
    return sample


"""A shard set: several shards seen as one event source (one revision state, one merged feed,
one history), the part of routing that kv-router and watch-hub share (DESIGN §3.5, §5).
kv-router's RoutedShards adds the KV, lease and maintenance surface and the routing decisions.

Invariants:
- `state` has the identity of the default shard and the newest revision any shard reported.
- The merged feed emits a revision only once every shard has closed it (watch/merge.py); a
  shard behind the others is asked to close the newest revision through `sync(name, rev)`.
- history() reads each shard the range touches and merges by revision.
- Events come only from the shard that owns their key (`owns`): a misplaced copy of a key on
  another shard (topology/misplaced.py) never reaches a watcher, live or replayed.
"""
from __future__ import annotations

import asyncio
from operator import attrgetter
from typing import Any, Awaitable, Callable

from kubefabric.etcd import errors
from kubefabric.etcd.keyrange import ALL, KeyRange
from kubefabric.watch.merge import MergedFeed


def span(key: bytes, range_end: bytes) -> tuple[bytes, bytes | None]:
    """etcd's (key, range_end) as (start, end) of the topology: end None = one key, b"" = all
    keys from start on."""
    if not range_end:
        return key, None
    return key, b"" if range_end == ALL else range_end


def pinned(req, head: int):
    """A read across shards answers at one snapshot revision R: the revision `req` asks for, or
    `head` (the newest the router knows of). Returns R and a copy of `req` (a Range or a Query
    request) at R; FUTURE_REV when it asks for a revision above `head`."""
    if req.revision > head:
        raise errors.FUTURE_REV
    sub = type(req)()
    sub.CopyFrom(req)
    sub.revision = req.revision if req.revision > 0 else head
    return sub.revision, sub


def _read_through(path: str) -> Any:
    """A read-only property: self.<path> (dotted), what an object takes over from one of its parts."""
    return property(attrgetter(path))


class ShardSetState:
    """Identity of the default shard; revisions across all shards."""

    def __init__(self, shard_set: "ShardSet"):
        self._set = shard_set
        self.seen = 0  # the newest revision a read reported (it may precede its shard's state)

    @property
    def committed(self) -> int:
        return max(self.seen, *(s.state.committed for s in self._set.shards.values()))

    @property
    def compact_rev(self) -> int:
        return max(s.state.compact_rev for s in self._set.shards.values())

    # the set's identity is its default shard's
    term: int = _read_through("_set.default.state.term")
    cluster_id: int = _read_through("_set.default.state.cluster_id")
    member_id: int = _read_through("_set.default.state.member_id")

    def fill(self, header, revision: int | None = None) -> None:
        d = self._set.default.state
        header.cluster_id, header.member_id, header.raft_term = d.cluster_id, d.member_id, d.term
        header.revision = self.committed if revision is None else revision


class ShardSet:
    def __init__(self, topology, shards: dict,
                 sync: Callable[[str, int], Awaitable] | None = None, merge: bool = True):
        """shards: name -> an opened shard (in-process Shard or RemoteShard), one per topology
        shard. sync(name, rev): make that shard close rev (default: the shard's own sync call).
        merge=False: no merged feed (nobody watches through this object)."""
        self.topology = topology
        self.shards = shards
        self.default = shards[topology.default]
        self.state = ShardSetState(self)
        self._sync = sync or self._sync_one
        self.feed = MergedFeed(shards, self._sync, self.owns) if merge else None

    def owns(self, name: str, key: bytes) -> bool:
        """Whether the current topology routes `key` to shard `name`."""
        return self.topology.route(key) == name

    def add_shard(self, name: str, shard) -> None:
        """A shard added by a topology reload (before the topology routes any key to it)."""
        self.shards[name] = shard
        if self.feed is not None:
            self.feed.add_source(name, shard)

    listeners: list = _read_through("feed.listeners")
    feed_committed: int = _read_through("feed.feed_committed")

    async def _sync_one(self, name: str, rev: int) -> None:
        await self.shards[name].sync(rev)

    async def refresh_head(self) -> None:
        """Every shard that sees commits its feed has not delivered (a shard service:
        RemoteShard.refresh_head) raises its state to them; `state.committed` follows."""
        await asyncio.gather(*(refresh() for s in self.shards.values()
                               if (refresh := getattr(s, "refresh_head", None)) is not None))

    async def refresh_compaction(self) -> int:
        """Every shard's compact revision as of now (watch/registry.py)."""
        await asyncio.gather(*(s.refresh_compaction() for s in self.shards.values()))
        return self.state.compact_rev

    async def history(self, rng: KeyRange, lo: int, hi: int) -> list:
        if rng.end is None:
            names = [self.topology.route(rng.start)]
        else:
            names = self.topology.shards_for_range(rng.start, rng.end)
        parts = await asyncio.gather(*(self.shards[n].history(rng, lo, hi) for n in names))
        if len(parts) == 1:
            return parts[0]  # the range is that shard's alone: every key of it is its own
        route = self.topology.route
        return sorted((e for name, part in zip(names, parts) for e in part if route(e.kv.key) == name),
                      key=lambda e: e.kv.mod_revision)

    async def close(self) -> None:
        for shard in self.shards.values():
            await shard.close()

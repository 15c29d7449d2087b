"""The shard surface: what kv-router's etcd services (KV, Lease, Maintenance, Cluster), the Query
service and the watcher registry call, whatever stands behind it. Three classes play it:

- kubefabric.shard.core.Shard: a shard in this process (the embedded default, and the core of
  every shard service replica);
- kubefabric.shardsvc.client.RemoteShard: a shard service over the Shard gRPC API;
- kv_router.routed.RoutedShards: several shards routed by a topology, as one.

`EventSource` is the part a WatcherRegistry needs; kubefabric.topology.shardset.ShardSet (a
watch-hub's shards as one feed) plays only that part. The type checker (mypy, CI) holds every
class to its Protocol where the seams are annotated (kv_router.shards.open_shards,
WatcherRegistry, the services' constructors).

Invariants every implementation keeps:
- `state.committed` never goes back; a response's header revision is at most what `state`
  reports afterwards, except a single-shard read behind a topology (DESIGN §3.3).
- `listeners` get (published, closed): the committed txns as (revision, events) in revision
  order, each exactly once, then the revision below which nothing more will be committed;
  `feed_committed` is the last such revision (it may trail `state.committed`, never lead it).
- `sync_rev` (writes, cross-shard reads, compaction): the shard's clock is first moved to at
  least that revision, in order with the request (DESIGN §3.2), so the request's revision is
  above every revision the caller has seen.
- Errors are kubefabric.etcd.errors.EtcdError with etcd's code and message (the canonical
  instances from kubefabric.etcd.errors where etcd has one).
"""
from __future__ import annotations

from typing import Callable, Protocol

from kubefabric.etcd.keyrange import KeyRange
from kubefabric.proto.etcdserverpb import rpc_pb2 as pb
from kubefabric.proto.kubefabric.query.v1 import query_pb2 as qpb
from kubefabric.proto.kubefabric.shard.v1 import shard_pb2 as spb
from kubefabric.proto.mvccpb.kv_pb2 import Event
from kubefabric.shard.hashkv import KVHash

# (published, closed): committed txns as (revision, events), then the closed revision
Listener = Callable[[list[tuple[int, list[Event]]], int], None]


class RevisionState(Protocol):
    """A shard's identity and revisions, as response headers report them."""

    @property
    def committed(self) -> int: ...
    @property
    def compact_rev(self) -> int: ...  # -1: never compacted
    @property
    def cluster_id(self) -> int: ...
    @property
    def member_id(self) -> int: ...
    @property
    def term(self) -> int: ...

    def fill(self, header: pb.ResponseHeader, revision: int | None = None) -> None:
        """Identity and `revision` (default: committed) into a response header."""


class EventSource(Protocol):
    """What a WatcherRegistry watches: committed changes as they happen, and history."""

    @property
    def state(self) -> RevisionState: ...
    @property
    def listeners(self) -> list[Listener]: ...
    @property
    def feed_committed(self) -> int: ...

    async def history(self, rng: KeyRange, lo: int, hi: int) -> list[Event]:
        """Events of revisions lo..hi in `rng`, oldest first, each with its prev_kv."""

    async def refresh_compaction(self) -> int:
        """The compact revision as of now, into state.compact_rev (a feed may trail a Compact
        a client was just answered)."""


class ShardSurface(EventSource, Protocol):
    """An etcd keyspace: etcd's KV, lease and maintenance semantics, plus the Query API."""

    @property
    def is_leader(self) -> bool: ...  # writes are accepted here (or forwarded by the service)

    async def range(self, req: pb.RangeRequest, sync_rev: int = 0) -> pb.RangeResponse: ...
    async def query(self, req: qpb.QueryRequest, sync_rev: int = 0) -> qpb.QueryResponse: ...
    async def indexes(self) -> list[qpb.IndexStatus]:
        """The label and field indexes (kubefabric.index) and their readiness; `shard` names
        the shard when several stand behind the surface."""
    async def put(self, req: pb.PutRequest, sync_rev: int = 0) -> pb.PutResponse: ...
    async def delete_range(self, req: pb.DeleteRangeRequest,
                           sync_rev: int = 0) -> pb.DeleteRangeResponse: ...
    async def txn(self, req: pb.TxnRequest, sync_rev: int = 0) -> pb.TxnResponse: ...

    async def sync(self, sync_rev: int) -> int:
        """Close at least sync_rev (no row is written); returns the committed revision."""

    async def compact(self, revision: int, physical: bool = False,
                      sync_rev: int = 0) -> pb.CompactionResponse: ...

    async def lease_grant(self, lease_id: int, ttl: int, sync_rev: int = 0) -> tuple[int, int]:
        """(lease ID, granted TTL); lease_id 0 picks an ID."""

    async def lease_revoke(self, lease_id: int, sync_rev: int = 0) -> int:
        """Revoke the lease and delete its keys; returns the header revision."""

    async def lease_renew(self, lease_id: int) -> int:
        """Restart the lease's TTL; returns it, or 0 when the lease does not exist."""

    async def lease_time_to_live(self, lease_id: int, keys: bool) -> tuple[int, int, list[bytes]]:
        """(remaining seconds or -1 when the lease does not exist, granted TTL, its keys)."""

    async def lease_list(self) -> list[int]:
        """Live leases, soonest expiry first (etcd's order)."""

    async def status(self) -> spb.StatusResponse: ...
    async def alarm(self, req: pb.AlarmRequest) -> list[pb.AlarmMember]: ...
    async def hash_kv(self, revision: int, crc: int | None = None,
                      sync_rev: int = 0) -> tuple[KVHash, int]:
        """etcd's HashKV at `revision` (0: now) and the current revision; crc continues a hash
        (several shards hashed as one history)."""
    async def defragment(self) -> None: ...
    async def close(self) -> None: ...

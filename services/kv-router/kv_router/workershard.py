"""The shard as a `kubefabric serve --workers N` worker process sees it: the parent's embedded
SQLite shard, written through the parent and read straight from the file.

A worker is kv-router in `--shard` mode against its parent's private Shard API
(kv_router.workers), except that Range and the Query API are answered here, from the SQLite file,
by a Shard core that never writes (its `writer` is None: the replica mode, whose head is read from
the database in the same snapshot, see Shard.read_head). Writes, leases, compaction, alarms and
auth go to the parent (Put, DeleteRange and Txn multiplexed on one WriteBatches stream, cheaper than a
call each: RemoteShard's, kubefabric.shardsvc.leaderwrites); watches follow the parent's commit feed (the Feed RPC).

Why a read here is linearizable (it reflects every write acknowledged to any client before the
read began):
- the parent acknowledges a write, to its own clients and to workers alike, only after its
  COMMIT returned: the commit is then in the WAL and in the WAL index (the -shm file every
  process of the file maps);
- a read here begins a new SQLite read transaction after its request arrived; in WAL mode a
  read transaction sees every transaction committed before it started (it takes its snapshot
  from the WAL index at its first statement, and the parent's COMMIT updated it before
  returning). So a write acknowledged before the read began is in the read's snapshot, whatever
  process acknowledged it; and the header revision is the snapshot's own (newest row or clock).
Revision headers never go backwards on one client connection (a connection stays with one
process): every header is at least `state.committed`, which only grows, and reads and the
parent's answers both raise it (`_observe`). A Status answered by the parent is lifted to it:
the parent's committed revision may trail a COMMIT that a read here already saw.

Two more things a client of one process must not tell apart from one of another:
- a watch "from now" starts after every write acknowledged before it was created: the watcher
  registry first raises the head to the database's (`refresh_head`), and waits for the feed to
  deliver up to it;
- an auth change (enable, a new user or role, a grant) made through any process applies to the
  next call here: the guard asks `auth_now` on every call, which looks at the database only when
  SQLite's data_version says another connection committed, and reloads the auth store from it
  when its generation moved.
"""
from __future__ import annotations

import logging

from backend_sqlite.store import SqliteStore

from kubefabric.auth import state as auth_state
from kubefabric.proto.etcdserverpb import rpc_pb2 as pb
from kubefabric.proto.kubefabric.shard.v1 import shard_pb2 as spb
from kubefabric.query.execute import run_query
from kubefabric.shard.authstore import META_GENERATION
from kubefabric.shard.core import Shard
from kubefabric.shardsvc.client import RemoteShard

log = logging.getLogger("kubefabric.worker")


class WorkerShard(RemoteShard):
    def __init__(self, parent_endpoint: str, data_dir: str, synchronous: str, max_txn_ops: int):
        super().__init__([parent_endpoint], name="default")
        # never opened as a leader: store.open() only (reads; no lease, no writer)
        self.file = SqliteStore(data_dir, synchronous=synchronous)
        self.local = Shard(self.file, max_txn_ops=max_txn_ops)
        self._seen_version = -1  # the database's data_version when auth_now last looked

    async def open(self, wait_s: float = 30.0, follow: bool = True) -> None:
        await super().open(wait_s, follow)
        await self.file.open()

    async def close(self) -> None:
        await super().close()
        await self.local.close()

    async def range(self, req: pb.RangeRequest, sync_rev: int = 0) -> pb.RangeResponse:
        if sync_rev:  # the clock moves on the writer only
            return await super().range(req, sync_rev)
        resp = await self.local.range(req)
        self._observe(resp.header.revision)
        return resp

    async def query(self, req, sync_rev: int = 0):
        if sync_rev:
            return await super().query(req, sync_rev)
        resp = await run_query(self.local, req, 0)
        self._observe(resp.header.revision)
        return resp

    async def refresh_head(self) -> None:
        async with self.file.snapshot() as cur:
            head = await self.local.read_head(cur)
        self._observe(head)

    def auth_now(self, generation: int):
        """(auth state, generation) of the committed auth store when it moved past `generation`
        (None: unchanged), read from the database without waiting (kv_router.authguard)."""
        store = self.file
        version = store.data_version()
        if version == self._seen_version and generation >= 0:
            return None
        self._seen_version = version
        meta_rows, = store.read_now("meta_all")
        if dict(meta_rows).get(META_GENERATION, 0) == generation:
            return None
        meta_rows, auth_rows = store.read_now("meta_all", "auth_all")  # one snapshot
        meta = dict(meta_rows)
        return auth_state.from_rows(auth_rows, meta), meta.get(META_GENERATION, 0)

    async def status(self, sync_rev: int = 0) -> spb.StatusResponse:
        resp = await super().status(sync_rev)
        resp.committed_rev = max(resp.committed_rev, self.state.committed)
        return resp

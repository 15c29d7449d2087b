"""Several shards behind one etcd endpoint (DESIGN §3–4): the same surface as one shard, routed
by the topology.

Invariants:
- A key lives on exactly one shard: topology.route(key). A read that spans shards takes each key
  only from that shard (a misplaced copy elsewhere is never shown, misplacement.py); one whose
  range the topology gives to one shard is forwarded: that shard owns every key of it.
  Single-shard requests are forwarded unchanged; a Txn or DeleteRange that may write keys of more than one shard is refused with
  FailedPrecondition naming them, before anything is applied: never a partial write. A Txn of
  reads only is answered across shards at one snapshot revision (crosstxn).
- Every write carries sync_rev = the newest revision the router has seen on any shard, applied
  in the writer batch of the write itself: a shard never assigns a revision at or below one any
  shard already reported, so revisions are globally ordered.
- A single-shard read reports its shard's closed revision (DESIGN §3.3), which may be below a
  revision another shard already reported; a cross-shard read reports the revision R of its
  snapshot; everything else reports the maximum any shard reported.
- Leases exist on every shard with the same ID (granted on the default shard first, which picks
  the ID); keep-alives, revocation and expiry act on every shard, so a lease's keys go everywhere.
"""
from __future__ import annotations

import asyncio
import logging

from grpc import StatusCode

from kubefabric.etcd import checks, errors
from kubefabric.etcd.errors import EtcdError
from kubefabric.proto.etcdserverpb import rpc_pb2 as pb
from kubefabric.proto.kubefabric.query.v1 import query_pb2 as qpb
from kubefabric.proto.kubefabric.shard.v1 import shard_pb2 as spb
from kubefabric.query.routing import cross_query
from kubefabric.shard.hashkv import KVHash
from kubefabric.snapshot import keyrows
from kubefabric.topology.shardset import ShardSet, span

from .crossrange import cross_range
from .crosstxn import SnapshotTxn, read_only
from .misplacement import Misplacement

log = logging.getLogger("kubefabric.router.routed")


REVOKE_RETRY_S = 15.0


class RoutedShards(ShardSet):
    def __init__(self, topology, shards: dict, max_txn_ops: int = 128, merge: bool = True):
        """shards: name -> an opened shard (in-process Shard or RemoteShard), one per topology
        shard. merge=False: watches are served elsewhere (a watch-hub), no merged feed here."""
        super().__init__(topology, shards, merge=merge)
        self.max_txn_ops = max_txn_ops
        self.is_leader = True
        self.misplacement = Misplacement(self)  # what crossrange asks before trusting a shard

    # ---- routing ----

    def _names(self, key: bytes, range_end: bytes) -> list[str]:
        start, end = span(key, range_end)
        if end is None:
            return [self.topology.route(start)]
        if end and start >= end:
            return [self.topology.route(start)]  # an empty range: any one shard answers it
        return self.topology.shards_for_range(start, end)

    def _one(self, names: set[str] | list[str], what: str):
        names = sorted(set(names))
        if len(names) > 1:
            raise EtcdError(StatusCode.FAILED_PRECONDITION,
                            f"kubefabric: {what} touches keys on shards {', '.join(names)}; a "
                            "write must stay on one shard (see the topology); a txn of reads "
                            "only may span shards")
        return self.shards[names[0]]

    def _txn_names(self, req: pb.TxnRequest, out: set[str]) -> set[str]:
        for cmp in req.compare:
            out.update(self._names(cmp.key, cmp.range_end))
        for op in (*req.success, *req.failure):
            kind = op.WhichOneof("request")
            if kind == "request_range":
                out.update(self._names(op.request_range.key, op.request_range.range_end))
            elif kind == "request_put":
                out.add(self.topology.route(op.request_put.key))
            elif kind == "request_delete_range":
                out.update(self._names(op.request_delete_range.key, op.request_delete_range.range_end))
            elif kind == "request_txn":
                self._txn_names(op.request_txn, out)
        return out

    # ---- KV ----

    async def range(self, req: pb.RangeRequest, sync_rev: int = 0) -> pb.RangeResponse:
        return await self._read(req, sync_rev, lambda s: s.range, cross_range, self.misplacement)

    async def query(self, req: qpb.QueryRequest, sync_rev: int = 0) -> qpb.QueryResponse:
        """The Query API (kubefabric.query): one shard, or a snapshot across the shards."""
        return await self._read(req, sync_rev, lambda s: s.query, cross_query, self.owns)

    async def _read(self, req, sync_rev: int, one_shard, across, ownership):
        """`req` (a Range or a Query) on the one shard its keys live on (`one_shard(shard)` is the
        call), else `across` the shards at one snapshot, dropping keys `ownership` routes elsewhere."""
        names = self._names(req.key, req.range_end) if req.key else [self.topology.default]
        if len(names) == 1:
            resp = await one_shard(self.shards[names[0]])(req, sync_rev)
        else:
            resp = await across({n: self.shards[n] for n in names}, req, self.state.committed, ownership)
        # a later write anywhere must get a revision above this one (DESIGN §3.2)
        self.state.seen = max(self.state.seen, resp.header.revision)
        return resp

    async def indexes(self) -> list:
        """Every shard's indexes, named by shard."""
        names = list(self.shards)
        parts = await asyncio.gather(*(self.shards[n].indexes() for n in names))
        out = []
        for name, part in zip(names, parts):
            for st in part:
                st.shard = name
                out.append(st)
        return out

    def _sync_rev(self, sync_rev: int) -> int:
        """What a write carries: at least every revision any shard reported (DESIGN §3.2)."""
        return max(sync_rev, self.state.committed)

    async def put(self, req: pb.PutRequest, sync_rev: int = 0) -> pb.PutResponse:
        shard = self.shards[self.topology.route(req.key)] if req.key else self.default
        return await shard.put(req, self._sync_rev(sync_rev))

    async def delete_range(self, req: pb.DeleteRangeRequest, sync_rev: int = 0) -> pb.DeleteRangeResponse:
        checks.check_delete(req)  # etcd's request errors come before any routing refusal
        shard = self._one(self._names(req.key, req.range_end), "this delete") if req.key else self.default
        return await shard.delete_range(req, self._sync_rev(sync_rev))

    async def txn(self, req: pb.TxnRequest, sync_rev: int = 0) -> pb.TxnResponse:
        checks.check_txn(req, self.max_txn_ops)  # etcd's request errors come before any refusal
        names = self._txn_names(req, set()) or {self.topology.default}
        if len(names) > 1 and read_only(req):  # all reads: one snapshot across the shards
            rev = self._sync_rev(sync_rev)
            resp = await SnapshotTxn(self, rev).answer(req)
            self.state.seen = max(self.state.seen, rev)
            return resp
        return await self._one(names, "this txn").txn(req, self._sync_rev(sync_rev))

    async def sync(self, rev: int) -> int:
        await asyncio.gather(*(s.sync(rev) for s in self.shards.values()))
        return self.state.committed

    async def compact(self, revision: int, physical: bool = False,
                      sync_rev: int = 0) -> pb.CompactionResponse:
        """Compaction at `revision` on every shard (each first brought to that revision)."""
        if revision > self.state.committed:
            raise errors.FUTURE_REV
        sync_rev = max(revision, sync_rev)
        results = await asyncio.gather(
            *(s.compact(revision, physical, sync_rev=sync_rev) for s in self.shards.values()),
            return_exceptions=True)
        failures = [r for r in results if isinstance(r, BaseException)]
        real = [f for f in failures if f is not errors.COMPACTED]
        if real:
            raise real[0]
        if len(failures) == len(results):  # every shard was compacted at or past it already
            raise errors.COMPACTED
        resp = pb.CompactionResponse()
        self.state.fill(resp.header)
        return resp

    # ---- leases: the same lease on every shard ----

    def _others(self) -> list:
        return [s for s in self.shards.values() if s is not self.default]

    async def lease_grant(self, lease_id: int, ttl: int, sync_rev: int = 0) -> tuple[int, int]:
        lease_id, ttl = await self.default.lease_grant(lease_id, ttl, self._sync_rev(sync_rev))
        results = await asyncio.gather(*(s.lease_grant(lease_id, ttl, self._sync_rev(sync_rev))
                                         for s in self._others()), return_exceptions=True)
        failed = [r for r in results if isinstance(r, BaseException)]
        if failed:
            await self._revoke_everywhere(lease_id)
            raise failed[0]
        return lease_id, ttl

    async def _revoke_everywhere(self, lease_id: int, sync_rev: int = 0) -> list:
        return await asyncio.gather(*(s.lease_revoke(lease_id, self._sync_rev(sync_rev))
                                      for s in self.shards.values()), return_exceptions=True)

    async def lease_revoke(self, lease_id: int, sync_rev: int = 0) -> int:
        """Revoked on every shard before it is acknowledged: a shard that failed (failing over,
        say) is asked again until it revoked or says the lease is gone (a revoke is idempotent),
        for up to REVOKE_RETRY_S; then its error reaches the client."""
        shards = list(self.shards.values())
        results = await self._revoke_everywhere(lease_id, sync_rev)
        default = results[shards.index(self.default)]
        if isinstance(default, BaseException):
            raise default
        loop = asyncio.get_running_loop()
        deadline = loop.time() + REVOKE_RETRY_S
        for i, shard in enumerate(shards):
            while isinstance(results[i], BaseException) and results[i] is not errors.LEASE_NOT_FOUND:
                if loop.time() > deadline:
                    raise results[i]
                await asyncio.sleep(0.1)
                try:
                    results[i] = await shard.lease_revoke(lease_id, self._sync_rev(sync_rev))
                except EtcdError as err:
                    results[i] = err
        return max([r for r in results if isinstance(r, int)] or [self.state.committed])

    async def lease_renew(self, lease_id: int) -> int:
        results = await asyncio.gather(*(s.lease_renew(lease_id) for s in self.shards.values()))
        return results[list(self.shards.values()).index(self.default)]

    async def lease_time_to_live(self, lease_id: int, keys: bool) -> tuple[int, int, list[bytes]]:
        ttl, granted, attached = await self.default.lease_time_to_live(lease_id, keys)
        if keys and ttl >= 0:
            route, names = self.topology.route, [n for n in self.shards if self.shards[n] is not self.default]
            others = await asyncio.gather(*(self.shards[n].lease_time_to_live(lease_id, True)
                                            for n in names))
            # each key from the shard that owns it (a misplaced copy elsewhere is not the key)
            attached = [k for k in attached if route(k) == self.topology.default]
            for name, other in zip(names, others):
                attached.extend(k for k in other[2] if route(k) == name)
        return ttl, granted, sorted(attached)

    async def lease_list(self) -> list[int]:
        return await self.default.lease_list()

    # ---- maintenance ----

    async def status(self) -> spb.StatusResponse:
        parts = await asyncio.gather(*(s.status() for s in self.shards.values()))
        resp = parts[list(self.shards.values()).index(self.default)]
        out = type(resp)()
        out.CopyFrom(resp)
        out.committed_rev = self.state.committed
        out.db_size = sum(p.db_size for p in parts)
        out.db_size_in_use = sum(p.db_size_in_use for p in parts)
        seen = {(a.memberID, a.alarm) for a in out.alarms}
        for p in parts:
            for a in p.alarms:
                if (a.memberID, a.alarm) not in seen:
                    seen.add((a.memberID, a.alarm))
                    out.alarms.append(a)
        return out

    async def alarm(self, req: pb.AlarmRequest) -> list[pb.AlarmMember]:
        parts = await asyncio.gather(*(s.alarm(req) for s in self.shards.values()))
        seen, out = set(), []
        for part in parts:
            for a in part:
                if (a.memberID, a.alarm) not in seen:
                    seen.add((a.memberID, a.alarm))
                    out.append(a)
        return out

    # ---- the auth store: the default shard's ----

    async def auth_apply(self, method: str, request, caller: str | None):
        return await self.default.auth_apply(method, request, caller)

    async def auth_read(self, generation: int = -1):
        return await self.default.auth_read(generation)

    async def hash_kv(self, revision: int, crc: int | None = None, sync_rev: int = 0):
        """etcd's HashKV of every shard's history as one (kubefabric.snapshot.keyrows): the rows
        of all shards in revision order, read at one revision, so equal to etcd's for the same
        history, except at a compaction revision (etcd answers with the hash its compaction
        kept; shards keep theirs each). crc: not supported here (nothing chains routed shards)."""
        if crc is not None:
            raise ValueError("a routed HashKV cannot continue another hash")
        rev = revision or self.state.committed
        if rev > self.state.committed:
            raise errors.FUTURE_REV
        await self.sync(max(rev, sync_rev))
        compact = await self.refresh_compaction()
        if 0 < revision < compact:
            raise errors.COMPACTED
        value = await keyrows.hash_kv(self, rev, compact)
        return KVHash(value, compact, rev), self.state.committed

    async def defragment(self) -> None:
        await asyncio.gather(*(s.defragment() for s in self.shards.values()))

"""A read-only Txn whose keys live on several shards: answered at one snapshot (DESIGN §3.5).

A Txn is read-only when its operations, on both branches and in every nested txn, are ranges
(compares are always reads). etcd answers a txn at its store's current revision; here that is R,
the newest revision the router knows of: every compare and every range without its own revision
reads the shards at R (each shard first brought to at least R, like a cross-shard range), so the
whole answer is the store as it was at R, and the header says R. etcd's txn rules are kept:
compares decide the branch of every txn on the path first (kubefabric.etcd.compare), then ranges
asking for a revision above R fail with "future revision" and below the compaction with
"compacted" before any result is returned; ranges answer with etcd's counts and limits across the
shards (crossrange), their headers carrying R only, as inside any etcd txn.
"""
from __future__ import annotations

from kubefabric.etcd import compare
from kubefabric.proto.etcdserverpb import rpc_pb2 as pb

from .crossrange import cross_range


def read_only(req: pb.TxnRequest) -> bool:
    for op in (*req.success, *req.failure):
        kind = op.WhichOneof("request")
        if kind == "request_txn":
            if not read_only(op.request_txn):
                return False
        elif kind != "request_range":
            return False
    return True


class SnapshotTxn:
    def __init__(self, routed, rev: int):
        """routed: the RoutedShards (routing, shards, state); rev: the snapshot revision R."""
        self.routed = routed
        self.rev = rev

    async def answer(self, req: pb.TxnRequest) -> pb.TxnResponse:
        path = await compare.decide_path(req, self._holds)
        self._check_path(req, iter(path))
        resp = await self._run(req, iter(path))
        self.routed.state.fill(resp.header, self.rev)
        return resp

    async def _read(self, req: pb.RangeRequest) -> pb.RangeResponse:
        """`req` at its revision, or at R, on the shards that own its keys."""
        routed = self.routed
        names = routed._names(req.key, req.range_end)
        sub = pb.RangeRequest()
        sub.CopyFrom(req)
        if sub.revision <= 0:
            sub.revision = self.rev
        if len(names) == 1:
            return await routed.shards[names[0]].range(sub, self.rev)
        return await cross_range({n: routed.shards[n] for n in names}, sub, self.rev,
                                 routed.misplacement)

    async def _holds(self, cmp: pb.Compare) -> bool:
        resp = await self._read(pb.RangeRequest(key=cmp.key, range_end=cmp.range_end))
        return compare.holds(cmp, [compare.row_of(kv) for kv in resp.kvs])

    def _check_path(self, req: pb.TxnRequest, path) -> None:
        for op in (req.success if next(path) else req.failure):
            kind = op.WhichOneof("request")
            if kind == "request_range":
                compare.check_range_revision(op.request_range, self.rev, self.routed.state.compact_rev)
            elif kind == "request_txn":
                self._check_path(op.request_txn, path)

    async def _run(self, req: pb.TxnRequest, path) -> pb.TxnResponse:
        ok = next(path)
        resp = pb.TxnResponse(succeeded=ok)
        resp.header.SetInParent()
        for op in (req.success if ok else req.failure):
            out = resp.responses.add()
            if op.WhichOneof("request") == "request_range":
                got = await self._read(op.request_range)
                got.header.Clear()
                got.header.revision = self.rev  # inside a txn etcd reports the txn's revision only
                out.response_range.CopyFrom(got)
            else:
                out.response_txn.CopyFrom(await self._run(op.request_txn, path))
        return resp

"""Shard.query: one shard answers a QueryRequest on one snapshot.

Invariants: the header revision is the revision the query read (the request's, or the
snapshot's newest when it asked for 0), so a caller continues a paged query at exactly that
revision; `more` is set when a match beyond `limit` exists, and `next_key` is then the key
right after the last one returned.
"""
from __future__ import annotations

from kubefabric.etcd.keyrange import KeyRange
from kubefabric.proto.kubefabric.query.v1 import query_pb2 as qpb
from kubefabric.shard.reads import resolve_rev

from .requirements import parse
from .scan import scan


async def run_query(shard, req: qpb.QueryRequest, sync_rev: int = 0) -> qpb.QueryResponse:
    reqs = parse(req)
    rng = KeyRange.of(req.key, req.range_end)
    if sync_rev > shard.state.committed:
        await shard.sync(sync_rev)
    async with shard.store.snapshot() as cur:
        head = await shard.read_head(cur)
        rev = resolve_rev(req.revision, head, shard.state.compact_rev)
        rows = [] if rng.empty else await scan(cur, rng, rev, head, reqs, req.limit)
    return response(shard.state, rows, rev, req, indexed=False)


def response(state, rows: list, rev: int, req: qpb.QueryRequest, indexed: bool) -> qpb.QueryResponse:
    """rows: at most limit + 1 matches in key order."""
    resp = qpb.QueryResponse(indexed=indexed)
    state.fill(resp.header, rev)
    if 0 < req.limit < len(rows):
        del rows[req.limit:]
        resp.more = True
        resp.next_key = rows[-1][0] + b"\x00"
    kvs = resp.kvs
    if req.keys_only:
        for r in rows:
            kvs.add(key=r[0], create_revision=r[1], mod_revision=r[2], version=r[3], lease=r[4])
    else:
        for r in rows:
            kvs.add(key=r[0], create_revision=r[1], mod_revision=r[2], version=r[3], lease=r[4],
                    value=r[5])
    return resp

"""A query whose range spans several shards: one snapshot revision, results merged in key
order (DESIGN §3.5, as kv-router's cross-shard Range).

R is the request's revision, or the newest revision the router knows of; every shard is brought
to at least R (sync_rev) and queried at R, so the union is the store at R. Each shard returns
at most `limit` matches (plus whether it has more); the first `limit` of the merge are the
first `limit` matches of the union.
"""
from __future__ import annotations

import asyncio
import heapq

from kubefabric.etcd import errors
from kubefabric.proto.kubefabric.query.v1 import query_pb2 as qpb


async def cross_query(shards: list, req: qpb.QueryRequest, head: int) -> qpb.QueryResponse:
    if req.revision > head:
        raise errors.FUTURE_REV
    rev = req.revision if req.revision > 0 else head
    sub = qpb.QueryRequest()
    sub.CopyFrom(req)
    sub.revision = rev
    parts = await asyncio.gather(*(s.query(sub, rev) for s in shards))
    resp = qpb.QueryResponse(indexed=all(p.indexed for p in parts))
    resp.header.CopyFrom(parts[0].header)
    resp.header.revision = rev
    merged = list(heapq.merge(*(p.kvs for p in parts), key=lambda kv: kv.key))
    if 0 < req.limit < len(merged):
        del merged[req.limit:]
        resp.more = True
    else:
        resp.more = any(p.more for p in parts)
    if resp.more:
        resp.next_key = merged[-1].key + b"\x00"
    resp.kvs.extend(merged)
    return resp

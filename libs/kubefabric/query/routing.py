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

from kubefabric.proto.kubefabric.query.v1 import query_pb2 as qpb
from kubefabric.topology.shardset import pinned


async def cross_query(shards: dict, req: qpb.QueryRequest, head: int,
                      owns=None) -> qpb.QueryResponse:
    """shards: name -> shard. owns(name, key): whether the topology routes `key` to that shard;
    with it, a shard's matches of keys routed elsewhere (misplaced copies) are dropped, and a
    page never reaches past the last key a shard with more matches returned (the next page
    resumes there, so nothing of it is skipped)."""
    rev, sub = pinned(req, head)
    parts = await asyncio.gather(*(s.query(sub, rev) for s in shards.values()))
    resp = qpb.QueryResponse(indexed=all(p.indexed for p in parts))
    resp.header.CopyFrom(parts[0].header)
    resp.header.revision = rev
    lists, resume = [], None  # resume: the lowest last key of a shard that has more
    for name, p in zip(shards, parts):
        if p.more and p.kvs and (resume is None or p.kvs[-1].key < resume):
            resume = p.kvs[-1].key
        lists.append([kv for kv in p.kvs if owns is None or owns(name, kv.key)])
    merged = list(heapq.merge(*lists, key=lambda kv: kv.key))
    resp.more = any(p.more for p in parts)
    if resume is not None:
        merged = [kv for kv in merged if kv.key <= resume]
    if 0 < req.limit < len(merged):
        del merged[req.limit:]
        resp.more = True
    if resp.more:
        resp.next_key = (merged[-1].key if merged else resume) + b"\x00"
    resp.kvs.extend(merged)
    return resp

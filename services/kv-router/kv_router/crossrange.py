"""A Range whose keys live on several shards: one consistent snapshot (DESIGN §3.5).

R is the revision asked for, or the newest revision the router knows of; every shard is first
brought to at least R (sync_rev) and then read at R, so the union is the store as it was at R.
etcd's range rules hold on the union: `count` is every key of the range at R (filters ignored),
`kvs` the first `limit` in the requested order, `more` whether any were left out; pagination
pinned at R (kube-apiserver's continue tokens) therefore walks the union without gaps or repeats.
"""
from __future__ import annotations

import asyncio
import heapq

from kubefabric.etcd import errors
from kubefabric.proto.etcdserverpb import rpc_pb2 as pb

_FIELDS = {
    pb.RangeRequest.KEY: lambda kv: kv.key,
    pb.RangeRequest.VERSION: lambda kv: kv.version,
    pb.RangeRequest.CREATE: lambda kv: kv.create_revision,
    pb.RangeRequest.MOD: lambda kv: kv.mod_revision,
    pb.RangeRequest.VALUE: lambda kv: kv.value,
}


async def cross_range(shards: list, req: pb.RangeRequest, head: int) -> pb.RangeResponse:
    """Answer `req` from `shards` (each holds a disjoint part of the range); `head` is the
    newest revision the router knows of."""
    if req.revision > head:
        raise errors.FUTURE_REV
    rev = req.revision if req.revision > 0 else head
    sub = pb.RangeRequest()
    sub.CopyFrom(req)
    sub.revision = rev
    parts = await asyncio.gather(*(s.range(sub, rev) for s in shards))

    resp = pb.RangeResponse()
    # etcd: the header carries the store's current revision, also when reading an older one
    resp.header.CopyFrom(parts[0].header)
    resp.header.revision = max(head, *(p.header.revision for p in parts)) if req.revision else rev
    resp.count = sum(p.count for p in parts)
    if req.count_only:
        return resp
    merged = _merge([p.kvs for p in parts], req)
    if 0 < req.limit < len(merged):
        del merged[req.limit:]
        resp.more = True
    else:
        resp.more = any(p.more for p in parts)
    resp.kvs.extend(merged)
    return resp


def _merge(lists, req: pb.RangeRequest) -> list:
    """The shards' kvs (each already in the requested order) in the requested order."""
    target, order = req.sort_target, req.sort_order
    if target != pb.RangeRequest.KEY and order == pb.RangeRequest.NONE:
        order = pb.RangeRequest.ASCEND
    key = _FIELDS[target]
    if target == pb.RangeRequest.KEY and order != pb.RangeRequest.DESCEND:
        return list(heapq.merge(*lists, key=key))
    return sorted((kv for kvs in lists for kv in kvs), key=key,
                  reverse=order == pb.RangeRequest.DESCEND)

"""A Range whose keys live on several shards: one consistent snapshot (DESIGN §3.5).

R is the revision asked for, or the newest revision the router knows of; every shard is first
brought to at least R (sync_rev) and then read at R, so the union is the store as it was at R.
etcd's range rules hold on the union: `count` is every key of the range at R (filters ignored),
`kvs` the first `limit` in the requested order, `more` whether any were left out; pagination
pinned at R (kube-apiserver's continue tokens) therefore walks the union without gaps or repeats.
A key is taken only from the shard the topology routes it to: a misplaced copy elsewhere is
never shown, counted or paged over (owned_part).
"""
from __future__ import annotations

import asyncio
import heapq

from kubefabric.proto.etcdserverpb import rpc_pb2 as pb
from kubefabric.topology import misplaced
from kubefabric.topology.shardset import pinned, span

_FIELDS = {
    pb.RangeRequest.KEY: lambda kv: kv.key,
    pb.RangeRequest.VERSION: lambda kv: kv.version,
    pb.RangeRequest.CREATE: lambda kv: kv.create_revision,
    pb.RangeRequest.MOD: lambda kv: kv.mod_revision,
    pb.RangeRequest.VALUE: lambda kv: kv.value,
}


async def cross_range(shards: dict, req: pb.RangeRequest, head: int,
                      ownership=None) -> pb.RangeResponse:
    """Answer `req` from `shards` (name -> shard; each owns a disjoint part of the range); `head`
    is the newest revision the router knows of. ownership (kv-router's RoutedShards): each
    shard's part keeps only the keys the topology routes to it (`owned_part`)."""
    rev, sub = pinned(req, head)
    parts = await asyncio.gather(*(s.range(sub, rev) for s in shards.values()))
    if ownership is not None:
        parts = await asyncio.gather(*(owned_part(name, shard, part, sub, ownership)
                                       for (name, shard), part in zip(shards.items(), parts)))

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


async def owned_part(name: str, shard, part: pb.RangeResponse, sub: pb.RangeRequest,
                     ownership) -> pb.RangeResponse:
    """`part`, shard `name`'s answer to `sub`, without the keys the topology routes elsewhere
    (misplaced keys, topology/misplaced.py), with etcd's count, limit and more still exact.

    A shard known clean (a complete scan found none) costs one route() per key returned; any
    other shard is first asked which of its keys in the range, at the same revision, are
    misplaced (its suspect intervals only: empty for prefix-like rules unless keys are
    misplaced), then `count` drops them and, with a limit, the page is asked again with room
    for them, so `limit` owned keys come back whenever the shard has them."""
    topology = ownership.topology
    met = [kv.key for kv in part.kvs if topology.route(kv.key) != name]
    if met:
        ownership.met(name, met)
    elif ownership.is_clean(name):
        return part
    start, end = span(sub.key, sub.range_end)
    found = await misplaced.scan(shard, name, topology, start, end or b"", sub.revision, budget=None)
    strays = {key for key, _ in found.misplaced}
    if not strays:
        return part
    fixed = pb.RangeResponse()
    fixed.header.CopyFrom(part.header)
    fixed.count = part.count - len(strays)
    if sub.count_only:
        return fixed
    if part.more and sub.limit > 0:
        again = pb.RangeRequest()
        again.CopyFrom(sub)
        again.limit = sub.limit + len(strays)
        part = await shard.range(again, sub.revision)
    kvs = [kv for kv in part.kvs if kv.key not in strays]
    fixed.more = part.more
    if 0 < sub.limit < len(kvs):
        del kvs[sub.limit:]
        fixed.more = True
    fixed.kvs.extend(kvs)
    return fixed

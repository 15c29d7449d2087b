"""KV.Range with etcd's exact semantics, over any cursor (a read snapshot, or the writer's open
transaction when a Txn reads its own writes).

etcd's rules kept here: the header revision is the store's current revision even when reading
an older one; `count` is every key in the range at that revision, whatever the limit and the
min/max filters; with a sort order or a filter the whole range is fetched, then filtered, sorted
and cut to `limit` (setting `more`); a non-KEY sort target with order NONE sorts ascending.
"""
from __future__ import annotations

from kubefabric.etcd import errors
from kubefabric.etcd.keyrange import KeyRange
from kubefabric.proto.etcdserverpb import rpc_pb2 as pb
from kubefabric.proto.mvccpb.kv_pb2 import KeyValue
from kubefabric.store.statements import shape_of

_SORT_KEYS = {
    pb.RangeRequest.KEY: lambda r: r[0],
    pb.RangeRequest.VERSION: lambda r: r[3],
    pb.RangeRequest.CREATE: lambda r: r[1],
    pb.RangeRequest.MOD: lambda r: r[2],
    pb.RangeRequest.VALUE: lambda r: r[5],
}


def to_kv(row) -> KeyValue:
    """A (key, create_rev, mod_rev, version, lease, value) row as a KeyValue."""
    return KeyValue(key=row[0], create_revision=row[1], mod_revision=row[2], version=row[3],
                    lease=row[4], value=row[5])


def range_values(rng: KeyRange) -> dict:
    return {"start": rng.start, "end": rng.end}


async def fetch_rows(cur, rng: KeyRange, rev: int, head: int, limit: int) -> list:
    """Live rows of `rng` at `rev`, key order, at most `limit` (0: all)."""
    if rng.empty:
        return []
    shape = shape_of(rng.end)
    values = {"start": rng.start, "end": rng.end, "rev": rev, "limit": limit}
    name = "latest_rows" if rev >= head else "at_rows"
    return await cur.rows(name, values, shape, limited=limit > 0)


async def count_rows(cur, rng: KeyRange, rev: int, head: int) -> int:
    if rng.empty:
        return 0
    values = {"start": rng.start, "end": rng.end, "rev": rev}
    name = "latest_count" if rev >= head else "at_count"
    return await cur.scalar(name, values, shape_of(rng.end))


def one_statement(req: pb.RangeRequest) -> bool:
    """Whether execute_range answers `req` with at most one statement (no separate count)."""
    return req.count_only or req.limit <= 0 or req.sort_order != pb.RangeRequest.NONE or bool(
        req.min_mod_revision or req.max_mod_revision or req.min_create_revision
        or req.max_create_revision)


def resolve_rev(requested: int, head: int, compact_rev: int) -> int:
    if requested > head:
        raise errors.FUTURE_REV
    if requested <= 0:
        return head
    if requested < compact_rev:
        raise errors.COMPACTED
    return requested


async def execute_range(cur, req: pb.RangeRequest, head: int, compact_rev: int) -> pb.RangeResponse:
    """Answer `req` from `cur`, whose newest state is revision `head`."""
    rev = resolve_rev(req.revision, head, compact_rev)
    rng = KeyRange.of(req.key, req.range_end)
    filtered = bool(req.min_mod_revision or req.max_mod_revision or req.min_create_revision
                    or req.max_create_revision)
    order = req.sort_order
    if req.sort_target != pb.RangeRequest.KEY and order == pb.RangeRequest.NONE:
        order = pb.RangeRequest.ASCEND
    elif req.sort_target == pb.RangeRequest.KEY and order == pb.RangeRequest.ASCEND:
        order = pb.RangeRequest.NONE  # rows already come in key order

    resp = pb.RangeResponse()
    resp.header.revision = head
    if req.count_only:
        resp.count = await count_rows(cur, rng, rev, head)
        return resp

    fetch_all = filtered or req.sort_order != pb.RangeRequest.NONE or req.limit <= 0
    rows = await fetch_rows(cur, rng, rev, head, 0 if fetch_all else req.limit + 1)
    if fetch_all:
        resp.count = len(rows)
    elif len(rows) <= req.limit:
        resp.count = len(rows)
    else:
        resp.count = await count_rows(cur, rng, rev, head)
    if filtered:
        rows = [r for r in rows if _passes(req, r)]
    if order != pb.RangeRequest.NONE:
        rows.sort(key=_SORT_KEYS[req.sort_target], reverse=order == pb.RangeRequest.DESCEND)
    if 0 < req.limit < len(rows):
        del rows[req.limit:]
        resp.more = True
    add_kvs(resp.kvs, rows, req.keys_only)
    return resp


def add_kvs(kvs, rows, keys_only: bool) -> None:
    """Append store rows (key, create_revision, mod_revision, version, lease, value) to a
    repeated KeyValue field; keys_only leaves the values out."""
    if keys_only:
        for r in rows:
            kvs.add(key=r[0], create_revision=r[1], mod_revision=r[2], version=r[3], lease=r[4])
    else:
        for r in rows:
            kvs.add(key=r[0], create_revision=r[1], mod_revision=r[2], version=r[3], lease=r[4],
                    value=r[5])


def _passes(req: pb.RangeRequest, row) -> bool:
    mod, create = row[2], row[1]
    if req.max_mod_revision and mod > req.max_mod_revision:
        return False
    if req.min_mod_revision and mod < req.min_mod_revision:
        return False
    if req.max_create_revision and create > req.max_create_revision:
        return False
    if req.min_create_revision and create < req.min_create_revision:
        return False
    return True

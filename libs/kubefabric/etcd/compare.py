"""etcd's Txn compare on the keys a compare names, in one place (the shard's writer decides
compares on its open transaction; kv-router decides those of a read-only Txn across shards on a
snapshot). Rows are (key, create_revision, mod_revision, version, lease, value), the order the
store's statements return them in.

etcd's rules: every key of the compare's range must satisfy it; a range with no key compares a
zero key (version, revisions and lease 0) except for VALUE, which is false (a missing key has no
value); a compare whose target_union is not set for its target compares against the zero value.
"""
from __future__ import annotations

from typing import Awaitable, Callable

from kubefabric.etcd import errors
from kubefabric.proto.etcdserverpb import rpc_pb2 as pb

# target -> (field of Compare.target_union, index in a row)
FIELDS = {
    pb.Compare.VERSION: ("version", 3),
    pb.Compare.CREATE: ("create_revision", 1),
    pb.Compare.MOD: ("mod_revision", 2),
    pb.Compare.VALUE: ("value", 5),
    pb.Compare.LEASE: ("lease", 4),
}


def holds(cmp: pb.Compare, rows: list) -> bool:
    """Whether `cmp` holds on `rows`, the live rows of its key range."""
    if not rows:
        if cmp.target == pb.Compare.VALUE:
            return False  # a missing key has no value to compare
        rows = [(cmp.key, 0, 0, 0, 0, b"")]
    field, col = FIELDS.get(cmp.target, ("version", 3))
    given = getattr(cmp, field) if cmp.WhichOneof("target_union") == field else (
        b"" if cmp.target == pb.Compare.VALUE else 0)
    result = cmp.result
    for row in rows:
        have = row[col]
        if result == pb.Compare.EQUAL:
            ok = have == given
        elif result == pb.Compare.NOT_EQUAL:
            ok = have != given
        elif result == pb.Compare.GREATER:
            ok = have > given
        elif result == pb.Compare.LESS:
            ok = have < given
        else:
            ok = True
        if not ok:
            return False
    return True


def row_of(kv) -> tuple:
    """A KeyValue as a row."""
    return (kv.key, kv.create_revision, kv.mod_revision, kv.version, kv.lease, kv.value)


async def decide_path(req: pb.TxnRequest, compare_holds: Callable[[pb.Compare], Awaitable[bool]]) -> list[bool]:
    """The compare outcome of each txn on the path etcd takes through `req`, in pre-order: a txn's
    compares (the first that fails ends them) pick its branch, then the txns nested in that branch
    are decided in order. `compare_holds` reads one compare's keys and applies `holds`."""
    path: list[bool] = []

    async def decide(txn: pb.TxnRequest) -> None:
        ok = True
        for cmp in txn.compare:
            if not await compare_holds(cmp):
                ok = False
                break
        path.append(ok)
        for op in (txn.success if ok else txn.failure):
            if op.WhichOneof("request") == "request_txn":
                await decide(op.request_txn)

    await decide(req)
    return path


def check_range_revision(rng: pb.RangeRequest, head: int, compact_rev: int) -> None:
    """etcd's check of a range inside a txn, before anything is applied: its revision must be at
    most the store's (`head`) and, when given, not compacted (-2 is compacted before any
    compaction)."""
    if rng.revision > head:
        raise errors.FUTURE_REV
    if rng.revision != 0 and rng.revision < compact_rev:
        raise errors.COMPACTED

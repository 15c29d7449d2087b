"""Small builders shared by the KV differential tests (Range, Put/DeleteRange, Txn, Compact).

Only request construction and a few read-back shorthands live here: every response a test cares
about is still passed to `record` by the test body itself.
"""
from __future__ import annotations

from kubefabric.proto.etcdserverpb import rpc_pb2 as pb

# Compare targets and results, and the union field each target sets.
VERSION, CREATE, MOD, VALUE, LEASE = (pb.Compare.VERSION, pb.Compare.CREATE, pb.Compare.MOD,
                                      pb.Compare.VALUE, pb.Compare.LEASE)
EQUAL, GREATER, LESS, NOT_EQUAL = (pb.Compare.EQUAL, pb.Compare.GREATER, pb.Compare.LESS,
                                   pb.Compare.NOT_EQUAL)
TARGETS = {VERSION: "version", CREATE: "create_revision", MOD: "mod_revision", VALUE: "value",
           LEASE: "lease"}
RESULTS = {EQUAL: "==", GREATER: ">", LESS: "<", NOT_EQUAL: "!="}

ALL = {"key": b"\0", "range_end": b"\0"}  # every key


def prefix_end(prefix: bytes) -> bytes:
    """The range_end that selects every key starting with `prefix` (etcd clientv3's rule)."""
    end = bytearray(prefix)
    while end:
        if end[-1] < 0xFF:
            end[-1] += 1
            return bytes(end)
        end.pop()
    return b"\0"  # prefix of only 0xff bytes (or empty): every key >= prefix


def compare(key: bytes, target, result, operand, range_end: bytes = b"") -> pb.Compare:
    return pb.Compare(key=key, range_end=range_end, target=target, result=result,
                      **{TARGETS[target]: operand})


def put_op(key: bytes, value: bytes = b"", **kw) -> pb.RequestOp:
    return pb.RequestOp(request_put=pb.PutRequest(key=key, value=value, **kw))


def range_op(key: bytes, **kw) -> pb.RequestOp:
    return pb.RequestOp(request_range=pb.RangeRequest(key=key, **kw))


def delete_op(key: bytes, **kw) -> pb.RequestOp:
    return pb.RequestOp(request_delete_range=pb.DeleteRangeRequest(key=key, **kw))


def txn_op(compare=(), success=(), failure=()) -> pb.RequestOp:
    return pb.RequestOp(request_txn=pb.TxnRequest(compare=list(compare), success=list(success),
                                                  failure=list(failure)))


def compact(c, revision: int, physical: bool = False):
    return c.call(c.kv.Compact, pb.CompactionRequest(revision=revision, physical=physical))


def grant(c, lease_id: int, ttl: int = 600):
    """LeaseGrant with an explicit ID, so the same ID is compared on both sides."""
    return c.call(c.lease.LeaseGrant, pb.LeaseGrantRequest(ID=lease_id, TTL=ttl))


def revoke(c, lease_id: int):
    return c.call(c.lease.LeaseRevoke, pb.LeaseRevokeRequest(ID=lease_id))


def record_rev(c, record, label: str) -> int:
    """Record (and return) the store's current revision, read from a Range header."""
    resp = c.get(b"\0", count_only=True)
    rev = getattr(getattr(resp, "header", None), "revision", None)
    record(label, {"revision": rev} if rev is not None else resp)
    return rev


def seed(c, record, items, label: str = "seed", **kw) -> None:
    """Put every (key, value) in order, recording each response."""
    for key, value in items:
        record(f"{label} {key!r}", c.put(key, value, **kw))


def record_all(c, record, label: str, **kw) -> None:
    """Record a Range over every key (plus any extra Range options)."""
    record(label, c.get(b"\0", range_end=b"\0", **kw))

"""Small builders shared by the KV differential tests (Range, Put/DeleteRange, Txn, Compact).

Only request construction and a few read-back shorthands live here: every response a test cares
about is still passed to `record` by the test body itself.
"""
from __future__ import annotations

import random

from kubefabric.etcd.keyrange import prefix_end  # noqa: F401  (etcd clientv3's rule; re-exported)
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


HISTORY_KEYS = [b"h/a", b"h/a/1", b"h/a_", b"h/b", b"h/b\x00", b"h/c", b"h/c%", b"h/d", b"h/\xff",
                b"h/\xff\x00", b"h\x00", b"i"]


def random_history(c, record, seed: int, n_ops: int, keys=HISTORY_KEYS) -> None:
    """A seeded mix of puts (some with prev_kv), single and range deletes and multi-key txns.
    The choices depend only on the seed, never on responses, so both sides get the same requests."""
    rnd = random.Random(seed)

    def pick_range():
        a, b = sorted(rnd.sample(range(len(keys) + 1), 2))
        end = keys[b] if b < len(keys) else b"\0"
        return keys[a], end

    for i in range(n_ops):
        kind = rnd.choices(["put", "delete", "delete_range", "txn"], weights=[6, 2, 1, 2])[0]
        key = rnd.choice(keys)
        value = b"%d" % i
        if kind == "put":
            resp = c.put(key, value, prev_kv=rnd.random() < 0.3)
        elif kind == "delete":
            resp = c.delete(key, prev_kv=rnd.random() < 0.3)
        elif kind == "delete_range":
            start, end = pick_range()
            resp = c.delete(start, range_end=end)
        else:
            touched = rnd.sample(keys, rnd.randint(1, 4))
            ops = [put_op(k, value) if rnd.random() < 0.7 else delete_op(k) for k in touched]
            cmp = [compare(key, VERSION, rnd.choice([EQUAL, GREATER, LESS]), rnd.randint(0, 3))]
            resp = c.txn(cmp, ops, ops[::-1])
        record(f"history {i} {kind}", resp)

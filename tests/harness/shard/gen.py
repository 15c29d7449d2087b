"""Request generators over a small alphabet of odd keys, drawing from random.Random (seeded
histories) or from hypothesis data (shrinkable), so both suites generate the same requests."""
from __future__ import annotations

import random

from hypothesis import strategies as st

from kubefabric.proto.etcdserverpb import rpc_pb2 as pb
from harness.shard.model import Model, prefix_end

C = pb.Compare

KEYS = (b"\x00", b"a", b"a\x00", b"a ", b"a%", b"a_", b"ab", b"\\", b"b\x80", b"\xff", b"\xff\xff")
VALUES = (b"", b"v", b"w", b"\x00\xff", b"%_\\")
LEASES = (1, 2, 3)


class Draw:
    """Choices from random.Random (seeded histories) or hypothesis data (shrinkable)."""

    def __init__(self, source):
        self.rnd = source if isinstance(source, random.Random) else None
        self.data = None if self.rnd else source

    def choice(self, seq):
        return self.rnd.choice(seq) if self.rnd else self.data.draw(st.sampled_from(seq))

    def integer(self, lo: int, hi: int) -> int:
        return self.rnd.randint(lo, hi) if self.rnd else self.data.draw(st.integers(lo, hi))

    def chance(self, percent: int) -> bool:
        return self.integer(0, 99) >= 100 - percent  # shrinks towards False


def gen_span(d: Draw) -> tuple[bytes, bytes]:
    kind, key = d.choice(("key", "key", "interval", "from", "prefix", "all")), d.choice(KEYS)
    if kind == "interval":
        return key, d.choice(KEYS)  # may be empty (key >= end), or "from key" when end is "\0"
    if kind == "from":
        return key, b"\x00"
    if kind == "prefix":
        return key, prefix_end(key)
    return (key, b"") if kind == "key" else (b"\x00", b"\x00")


def gen_revision(d: Draw, m: Model) -> int:
    kind = d.choice(("head", "retained", "compacted", "future", "edge"))
    if kind == "head" or (kind == "compacted" and m.compacted <= 1):
        return 0
    if kind == "retained":
        return d.integer(max(1, m.compacted), m.head)
    if kind == "compacted":
        return d.integer(1, m.compacted - 1)
    if kind == "future":
        return m.head + d.integer(1, 2)
    return max(1, d.choice((m.compacted - 1, m.compacted, m.compacted + 1, m.head - 1, m.head)))


def gen_put(d: Draw) -> pb.PutRequest:
    req = pb.PutRequest(key=d.choice(KEYS), value=d.choice(VALUES), lease=d.choice((0, 0, 0) + LEASES),
                        prev_kv=d.chance(50))
    if d.chance(15):
        flag = d.choice(("ignore_value", "ignore_lease"))
        setattr(req, flag, True)
        req.ClearField("value" if flag == "ignore_value" else "lease")
    return req


def gen_delete(d: Draw) -> pb.DeleteRangeRequest:
    key, end = gen_span(d)
    return pb.DeleteRangeRequest(key=key, range_end=end, prev_kv=d.chance(50))


def gen_range(d: Draw, m: Model) -> pb.RangeRequest:
    key, end = gen_span(d)
    req = pb.RangeRequest(key=key, range_end=end, revision=gen_revision(d, m), limit=d.choice((0, 0, 1, 2, 3)),
                          sort_order=d.choice((0, 0, pb.RangeRequest.ASCEND, pb.RangeRequest.DESCEND)),
                          keys_only=d.chance(20), count_only=d.chance(10))
    if d.chance(20):
        setattr(req, d.choice(("min_mod_revision", "max_mod_revision", "min_create_revision",
                               "max_create_revision")), d.integer(1, m.head))
    return req


def gen_compare(d: Draw, m: Model) -> pb.Compare:
    key, end = gen_span(d) if d.chance(30) else (d.choice(KEYS), b"")
    cmp = pb.Compare(key=key, range_end=end, target=d.choice((C.VERSION, C.CREATE, C.MOD, C.VALUE, C.LEASE)),
                     result=d.choice((C.EQUAL, C.NOT_EQUAL, C.GREATER, C.LESS)))
    if cmp.target == C.VERSION:
        cmp.version = d.integer(0, 3)
    elif cmp.target in (C.CREATE, C.MOD):
        setattr(cmp, "create_revision" if cmp.target == C.CREATE else "mod_revision", d.integer(0, m.head))
    elif cmp.target == C.VALUE:
        cmp.value = d.choice(VALUES)
    else:
        cmp.lease = d.choice((0,) + LEASES)
    return cmp


def _literal_span_has(key: bytes, end: bytes, k: bytes) -> bool:
    """etcd's txn duplicate check takes [key, range_end) literally: range_end "\\0" is empty."""
    return k == key if not end else key <= k < end


def gen_ops(d: Draw, m: Model) -> list[pb.RequestOp]:
    """0-3 ops that pass etcd's duplicate-key check (so puts and "\\0" deletes may share keys)."""
    ops, puts, spans = [], set(), []
    for _ in range(d.integer(0, 3)):
        kind = d.choice(("put", "put", "delete", "range"))
        if kind == "put":
            req = gen_put(d)
            if req.key not in puts and not any(_literal_span_has(*s, req.key) for s in spans):
                puts.add(req.key)
                ops.append(pb.RequestOp(request_put=req))
        elif kind == "delete":
            req = gen_delete(d)
            if not any(_literal_span_has(req.key, req.range_end, k) for k in puts):
                spans.append((req.key, req.range_end))
                ops.append(pb.RequestOp(request_delete_range=req))
        else:
            ops.append(pb.RequestOp(request_range=gen_range(d, m)))
    return ops


def gen_txn(d: Draw, m: Model) -> pb.TxnRequest:
    return pb.TxnRequest(compare=[gen_compare(d, m) for _ in range(d.integer(0, 2))],
                         success=gen_ops(d, m), failure=gen_ops(d, m))


def gen_write(d: Draw, m: Model):
    kind = d.choice(("put", "put", "delete", "txn", "txn"))
    return gen_put(d) if kind == "put" else gen_delete(d) if kind == "delete" else gen_txn(d, m)

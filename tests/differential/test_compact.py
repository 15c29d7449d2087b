"""KV.Compact, differential: what survives a compaction, reads below/at/above the compact
revision, repeated, stale and future compactions, physical compaction and the header revision."""
from kubefabric.proto.etcdserverpb import rpc_pb2 as pb

from harness.kvhelpers import (EQUAL, MOD, VERSION, compact, compare, grant, put_op, random_history,
                       range_op, record_all, record_rev)

L1 = 7001


def _history(c, record):
    """Revisions 2..12 over keys that are: untouched since creation (a), updated before the
    compact point (b), deleted before it (c), deleted at it (d), updated after it (e),
    deleted then recreated across it (f)."""
    for label, call in [
        ("put a", lambda: c.put(b"a", b"a1")),                 # 2
        ("put b", lambda: c.put(b"b", b"b1")),                 # 3
        ("put c", lambda: c.put(b"c", b"c1", lease=L1)),       # 4
        ("put b2", lambda: c.put(b"b", b"b2")),                # 5
        ("put d", lambda: c.put(b"d", b"d1")),                 # 6
        ("put e", lambda: c.put(b"e", b"e1", lease=L1)),       # 7
        ("delete c", lambda: c.delete(b"c")),                  # 8
        ("put f", lambda: c.put(b"f", b"f1")),                 # 9
        ("delete f", lambda: c.delete(b"f")),                  # 10
        ("put b3", lambda: c.put(b"b", b"b3")),                # 11
        ("delete d", lambda: c.delete(b"d")),                  # 12
        ("put e2", lambda: c.put(b"e", b"e2", prev_kv=True)),  # 13
        ("put f again", lambda: c.put(b"f", b"f2")),           # 14
    ]:
        record(label, call())


def _reads(c, record, label, revs):
    for rev in revs:
        record(f"{label} all @{rev}", c.get(b"\0", range_end=b"\0", revision=rev))
        record(f"{label} count @{rev}", c.get(b"a", range_end=b"z", revision=rev, count_only=True))
        record(f"{label} b @{rev}", c.get(b"b", revision=rev))
        record(f"{label} mod>=5 limit 1 @{rev}", c.get(b"a", range_end=b"z", revision=rev, limit=1,
                                                        min_mod_revision=5))


def test_compact_then_read(differential):
    """Reads below the compact revision fail, at and above it see exactly the old state."""
    def body(c, record):
        record("grant", grant(c, L1))
        _history(c, record)
        _reads(c, record, "before", (1, 5, 11, 12, 14))
        record("compact 12", compact(c, 12))
        record_rev(c, record, "rev after compact")
        _reads(c, record, "after", (1, 11, 12, 13, 14, 0, -1, 15))
        record("compact 12 again", compact(c, 12))
        record("compact 11 (stale)", compact(c, 11))
        record("compact 1 (stale)", compact(c, 1))
        record("compact 15 (future)", compact(c, 15))
        record("compact 100 (future)", compact(c, 100))
        record("compact 2^62 (future)", compact(c, 2**62))
        record_rev(c, record, "rev after refused compactions")
        record("put b4 prev_kv", c.put(b"b", b"b4", prev_kv=True))
        record("put a2 prev_kv", c.put(b"a", b"a2", prev_kv=True))
        record("delete e prev_kv", c.delete(b"e", prev_kv=True))
        record("put c again", c.put(b"c", b"c2", prev_kv=True))
        record("txn on compacted keys", c.txn([compare(b"a", MOD, EQUAL, 15),
                                               compare(b"b", VERSION, EQUAL, 4)],
                                              [range_op(b"a", range_end=b"z", revision=12)],
                                              [range_op(b"a", range_end=b"z")]))
        record("txn range below compaction", c.txn([], [range_op(b"a", revision=11)]))
        record_all(c, record, "final")
        record("lease keys", c.call(c.lease.LeaseTimeToLive,
                                    pb.LeaseTimeToLiveRequest(ID=L1, keys=True)), ignore=("TTL",))
    differential(body)


def test_compact_current_and_future(differential):
    """Compacting at the current revision leaves only the current state readable."""
    def body(c, record):
        record("grant", grant(c, L1))
        _history(c, record)
        record("compact future", compact(c, 15))
        record("compact current 14", compact(c, 14))
        record_rev(c, record, "rev")
        _reads(c, record, "after", (13, 14, 0))
        record("compact current again", compact(c, 14))
        record("put g", c.put(b"g", b"g1"))
        record("compact 15 now current", compact(c, 15, physical=True))
        record("compact 15 physical again", compact(c, 15, physical=True))
        record("range @14", c.get(b"a", revision=14))
        record("range @15", c.get(b"\0", range_end=b"\0", revision=15))
        record("delete all", c.delete(b"\0", range_end=b"\0", prev_kv=True))
        record("compact at the deletion", compact(c, 16))
        record("range @15 after", c.get(b"\0", range_end=b"\0", revision=15))
        record("range @16", c.get(b"\0", range_end=b"\0", revision=16))
        record("put a again", c.put(b"a", b"new", prev_kv=True))
        record("get a", c.get(b"a"))
        record_rev(c, record, "final rev")
    differential(body, spans_shards=True)


def test_compact_physical(differential):
    """physical=true answers once the compaction is done; the data left is the same."""
    def body(c, record):
        record("grant", grant(c, L1))
        _history(c, record)
        record("compact 5 physical", compact(c, 5, physical=True))
        _reads(c, record, "after 5", (4, 5, 6, 14))
        record("compact 12 physical", compact(c, 12, physical=True))
        _reads(c, record, "after 12", (5, 11, 12, 14))
        record("compact 12 physical again", compact(c, 12, physical=True))
        record("compact 13 non-physical", compact(c, 13))
        record("compact 13 physical", compact(c, 13, physical=True))
        record("compact 99 physical", compact(c, 99, physical=True))
        record_rev(c, record, "rev")
        record("txn writes after compaction", c.txn([compare(b"b", VERSION, EQUAL, 3)],
                                                    [put_op(b"b", b"b4", prev_kv=True),
                                                     range_op(b"b", revision=13)]))
        record_all(c, record, "final")
    differential(body)


def test_compact_edge_revisions(differential):
    """Compaction at revision 0, 1 and negative revisions on a fresh and a written store."""
    def body(c, record):
        record("fresh: compact 0", compact(c, 0))
        record("fresh: compact -1", compact(c, -1))
        record("fresh: compact 2 (future)", compact(c, 2))
        record("fresh: compact 1", compact(c, 1))
        record("fresh: compact 1 again", compact(c, 1))
        record("fresh: range @1", c.get(b"a", revision=1))
        record("put a", c.put(b"a", b"1"))
        record("put a again", c.put(b"a", b"2"))
        record("compact 0", compact(c, 0))
        record("compact 2", compact(c, 2, physical=True))
        record("compact 0 after 2", compact(c, 0))
        record("compact -5 after 2", compact(c, -5))
        record("range @1", c.get(b"a", revision=1))
        record("range @2", c.get(b"a", revision=2))
        record("range @3", c.get(b"a", revision=3))
        record_rev(c, record, "final rev")
    differential(body)


def test_compact_random_history(differential):
    """Successive compactions of a seeded history (txns write several rows per revision): every
    retained revision still reads exactly as before, the one below fails."""
    def body(c, record):
        random_history(c, record, seed=11, n_ops=80)
        head = record_rev(c, record, "head")
        for step, at in enumerate((head // 4, head // 2, head - 3)):
            record(f"compact {at}", compact(c, at, physical=step % 2 == 1))
            for rev in (at - 1, *range(at, head + 1)):
                record(f"after {at}: all @{rev}", c.get(b"\0", range_end=b"\0", revision=rev))
        random_history(c, record, seed=12, n_ops=20)
        head = record_rev(c, record, "head after more writes")
        record("compact head", compact(c, head, physical=True))
        record_all(c, record, "final")
    differential(body)

"""Read-only Txns whose keys live on several shards (issue 14, item 6), differential: on the
"topology" target (THREE_SHARDS: tenant-a's pods on PostgreSQL, events on MariaDB, the rest on
the router's SQLite shard) these compares and ranges span shards and are answered at one
snapshot revision; etcd answers them as any txn. Compares on keys and ranges of several shards,
both branches, nested txns, ranges with limits, sorts, counts, keys only and their own
revisions (older, future, compacted). Writes spanning shards stay refused (tests/routing).
"""
from kubefabric.proto.etcdserverpb import rpc_pb2 as pb

from harness.kvhelpers import (EQUAL, GREATER, LESS, MOD, NOT_EQUAL, VALUE, VERSION, compact, compare,
                       prefix_end, range_op, record_rev, txn_op)

POD = b"/registry/pods/tenant-a/web"           # tenants
EVENT = b"/registry/events/default/e1"         # events
CONFIG = b"/registry/configmaps/default/cm"    # main (default)
OTHER_POD = b"/registry/pods/tenant-b/api"     # main
PODS, REGISTRY = b"/registry/pods/", b"/registry/"


def test_read_only_txn_across_shards(differential):
    def body(c, record):
        record("put pod", c.put(POD, b"p1"))
        record("put event", c.put(EVENT, b"e1"))
        record("put config", c.put(CONFIG, b"c1"))
        record("put other pod", c.put(OTHER_POD, b"o1"))
        old = record_rev(c, record, "before the second round")
        record("put pod again", c.put(POD, b"p2"))
        record("put event again", c.put(EVENT, b"e2"))
        pod_mod = c.get(POD).kvs[0].mod_revision
        everything = range_op(REGISTRY, range_end=prefix_end(REGISTRY))

        record("compares on two shards hold", c.txn(
            [compare(POD, MOD, EQUAL, pod_mod), compare(EVENT, VALUE, EQUAL, b"e2")],
            [everything, range_op(POD), range_op(EVENT, keys_only=True)],
            [range_op(CONFIG)]))
        record("one compare fails: the other branch", c.txn(
            [compare(POD, VALUE, EQUAL, b"p2"), compare(CONFIG, VALUE, EQUAL, b"nope")],
            [everything], [range_op(EVENT), range_op(PODS, range_end=prefix_end(PODS))]))
        record("a compare over a range of two shards", c.txn(
            [compare(PODS, VERSION, GREATER, 0, range_end=prefix_end(PODS))],
            [range_op(PODS, range_end=prefix_end(PODS), count_only=True)], []))
        record("a range compare that fails on one shard only", c.txn(
            [compare(PODS, VERSION, LESS, 2, range_end=prefix_end(PODS))], [everything],
            [range_op(PODS, range_end=prefix_end(PODS), keys_only=True)]))
        record("value of a missing key on another shard", c.txn(
            [compare(b"/registry/events/default/none", VALUE, NOT_EQUAL, b"x"),
             compare(CONFIG, VERSION, EQUAL, 1)], [everything], [range_op(CONFIG)]))
        record("limits, sorts and counts across shards", c.txn([], [
            range_op(REGISTRY, range_end=prefix_end(REGISTRY), limit=2),
            range_op(REGISTRY, range_end=prefix_end(REGISTRY), limit=3,
                     sort_order=pb.RangeRequest.DESCEND, sort_target=pb.RangeRequest.MOD),
            range_op(REGISTRY, range_end=prefix_end(REGISTRY), sort_target=pb.RangeRequest.VALUE),
            range_op(REGISTRY, range_end=prefix_end(REGISTRY), min_mod_revision=old + 1),
            range_op(b"\0", range_end=b"\0", count_only=True)], []))
        record("nested txns on other shards", c.txn(
            [compare(CONFIG, VERSION, EQUAL, 1)],
            [txn_op([compare(EVENT, VERSION, EQUAL, 2)], [range_op(POD), everything], [range_op(CONFIG)]),
             txn_op([compare(POD, VALUE, EQUAL, b"p1")], [range_op(EVENT)],
                    [txn_op([], [range_op(OTHER_POD)], [])])],
            [range_op(EVENT)]))
        record("ranges at an older revision", c.txn(
            [compare(POD, VALUE, EQUAL, b"p2")],
            [range_op(REGISTRY, range_end=prefix_end(REGISTRY), revision=old), range_op(POD, revision=old)],
            []))
        now = record_rev(c, record, "read-only txns never bump the revision")
        record("a range in the future", c.txn([compare(POD, VERSION, EQUAL, 2)],
                                               [range_op(EVENT), range_op(POD, revision=now + 5)], []))
        record("compact", compact(c, old + 1))
        record("a range below the compaction", c.txn([compare(EVENT, VERSION, GREATER, 0)],
                                                     [range_op(REGISTRY, range_end=prefix_end(REGISTRY),
                                                               revision=old)], []))
        record("a range at the compaction", c.txn([], [
            range_op(REGISTRY, range_end=prefix_end(REGISTRY), revision=old + 1)], []))
        record_rev(c, record, "still the same revision")
    differential(body)

"""Maintenance.HashKV against etcd 3.7.3 (issue 20 point 4): the same operations on both, the
same hash at each revision and at each compaction point.

What the history exercises: puts, overwrites (versions), a txn writing several keys at one
revision (sub revisions), deletes and a range delete (tombstones), a delete and a re-create
(generations), keys with a lease; compactions at a live revision, at a tombstone's revision,
with no live key left; the hashes etcd keeps from its compactions (HashKV at a compaction
revision reports the previous compaction) and the errors for compacted and future revisions.
Compactions are physical, so etcd has finished (and kept its hash) before the next call.

On a topology of several shards kv-router hashes the rows of every shard in revision order
(kubefabric.snapshot.keyrows), as etcd does: test_hashkv_across_shards. Only at a compaction
revision does it differ (etcd answers with the hash its compaction kept; shards keep theirs each),
so the first tests leave the topology target out, and the watch-hub one (a SQLite shard service,
as the topology's) to keep CI's time.
"""
from __future__ import annotations

from kubefabric.proto.etcdserverpb import rpc_pb2 as pb



def hash_kv(c, revision=0):
    return c.call(c.maintenance.HashKV, pb.HashKVRequest(revision=revision))


def compact(c, revision):
    return c.call(c.kv.Compact, pb.CompactionRequest(revision=revision, physical=True))


def put_op(key, value):
    return pb.RequestOp(request_put=pb.PutRequest(key=key, value=value))


def test_hashkv_over_a_history_and_its_compactions(differential):
    def body(c, record):
        record("empty store", hash_kv(c))
        record("future revision", hash_kv(c, 5))
        lease = c.call(c.lease.LeaseGrant, pb.LeaseGrantRequest(ID=0x77, TTL=600))
        record("lease", lease)
        c.put(b"a", b"1")                                    # 2
        c.put(b"b", b"1", lease=0x77)                        # 3
        c.put(b"a", b"2")                                    # 4
        c.txn(success=[put_op(b"c", b"1"), put_op(b"d", b"1"), put_op(b"e", b"1")])  # 5
        c.delete(b"b")                                       # 6
        c.put(b"b", b"again")                                # 7
        c.delete(b"c", range_end=b"e")                       # 8: c and d
        c.put(b"f", b"x" * 300)                              # 9
        for rev in range(0, 10):
            record(f"hash at {rev}", hash_kv(c, rev))
        record("compact at 4 (a live revision)", compact(c, 4))
        record("hash at the compaction revision (kept hash)", hash_kv(c, 4))
        record("hash below it", hash_kv(c, 3))
        for rev in (5, 8, 0):
            record(f"hash at {rev} after compacting at 4", hash_kv(c, rev))
        record("compact at 6 (a tombstone's revision)", compact(c, 6))
        for rev in (6, 7, 9):
            record(f"hash at {rev} after compacting at 6", hash_kv(c, rev))
        c.put(b"a", b"3")                                    # 10
        c.call(c.lease.LeaseRevoke, pb.LeaseRevokeRequest(ID=0x77))  # no key left on it
        record("compact at 10", compact(c, 10))
        record("hash at 10 (kept)", hash_kv(c, 10))
        record("hash now", hash_kv(c))
    differential(body, reference="etcd37", without=("topology", "hub"))  # kept hashes, CI time: see above


def test_hashkv_when_no_key_is_left(differential):
    """etcd skips rows its compaction drops only while some key is live: with every key deleted,
    the kept rows below the compaction count again."""
    def body(c, record):
        c.put(b"x", b"1")                                    # 2
        c.put(b"y", b"1")                                    # 3
        c.put(b"x", b"2")                                    # 4
        record("compact at 3", compact(c, 3))
        c.delete(b"x")                                       # 5
        record("one key live", hash_kv(c))
        c.delete(b"y")                                       # 6
        record("no key live", hash_kv(c))
        record("at 5", hash_kv(c, 5))
        record("compact at 6 (every key deleted)", compact(c, 6))
        record("kept hash at 6", hash_kv(c, 6))
        c.put(b"z", b"1")                                    # 7
        record("after a new key", hash_kv(c))
        record("compact at 7", compact(c, 7))
        record("kept hash at 7", hash_kv(c, 7))
        c.put(b"z", b"2")                                    # 8
        c.delete(b"z")                                       # 9
        record("compact at 9 (a tombstone, nothing live)", compact(c, 9))
        record("kept hash at 9", hash_kv(c, 9))
        record("now", hash_kv(c))
    differential(body, reference="etcd37", without=("topology", "hub"))  # kept hashes, CI time: see above



def test_hashkv_across_shards(differential):
    """On a topology of three shards (harness.servers.THREE_SHARDS: the keys below live on the
    default, tenants and events shards) the rows of every shard are hashed in revision order,
    as etcd hashes its one bucket: the same hash at each revision, before and after compactions
    (not at a compaction revision itself: there etcd answers with the hash its compaction kept,
    which shards keep each for their own rows)."""
    a, p, q, e = (b"/registry/configmaps/default/a", b"/registry/pods/tenant-a/p",
                  b"/registry/pods/tenant-a/q", b"/registry/events/default/e")

    def body(c, record):
        c.call(c.lease.LeaseGrant, pb.LeaseGrantRequest(ID=0x77, TTL=600))
        c.put(a, b"1")                                       # 2
        c.put(p, b"1", lease=0x77)                           # 3
        c.put(e, b"1")                                       # 4
        c.put(a, b"2")                                       # 5
        c.txn(success=[put_op(q, b"1"), put_op(p, b"2")])   # 6: one shard, two subs
        c.delete(p)                                          # 7
        c.put(p, b"again")                                   # 8
        c.delete(e)                                          # 9
        for rev in range(0, 10):
            record(f"hash at {rev}", hash_kv(c, rev))
        record("compact at 5", compact(c, 5))
        for rev in (6, 8, 0):
            record(f"hash at {rev} after compacting at 5", hash_kv(c, rev))
        record("compact at 7 (a tombstone's revision)", compact(c, 7))
        for rev in (8, 9):
            record(f"hash at {rev} after compacting at 7", hash_kv(c, rev))
        for key in (a, p, q):
            c.delete(key)                                    # 10, 11, 12: no key left
        record("no key live", hash_kv(c))
    differential(body, reference="etcd37", targets=["topology"])

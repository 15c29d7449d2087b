"""Maintenance.Snapshot restored into a real etcd (issue 20 point 2): a history written to
KubeFabric, saved by etcd 3.7.3's own `etcdctl snapshot save`, read by `etcdutl snapshot status`
(bbolt's integrity check included), restored by `etcdutl snapshot restore` into a data dir that
a real etcd 3.7.3 then serves: the same keys, values, create/mod revisions and versions at the
head and at older revisions, the same compaction point, the lease with its keys attached.

The history spans several bbolt pages (branch pages), a value bigger than a page (overflow
pages), a txn of several keys (sub revisions), deletions, a key re-created after its deletion,
a compaction and a lease. Embedded (one SQLite shard: etcd's HashKV of the restored store equals
KubeFabric's, which checks every row of the key bucket) and a topology of three shards on
SQLite, PostgreSQL and MariaDB (the snapshot taken at one revision across them).
"""
from __future__ import annotations

import json
import subprocess

import pytest

from harness.client import Client
from harness.servers import etcd37_binary, etcdctl37_binary, etcdutl_binary, start_etcd
from kubefabric.proto.etcdserverpb import rpc_pb2 as pb

LEASE = 0x77
ALL = dict(key=b"\0", range_end=b"\0")
# keys of the three-shard topology (harness.servers.THREE_SHARDS): default, tenants, events
KEYS = [b"/registry/configmaps/default/a", b"/registry/pods/tenant-a/p", b"/registry/events/default/e"]


def ok(resp):
    assert not hasattr(resp, "code"), resp
    return resp


def put_op(key, value):
    return pb.RequestOp(request_put=pb.PutRequest(key=key, value=value))


def write_history(c: Client) -> int:
    """The history; returns the compact revision."""
    ok(c.call(c.lease.LeaseGrant, pb.LeaseGrantRequest(ID=LEASE, TTL=600)))
    for k in KEYS:
        ok(c.put(k, b"v1"))
    ok(c.put(b"/registry/leases/kube-system/l", b"held", lease=LEASE))
    ok(c.put(KEYS[0], b"v2"))
    ok(c.txn(success=[put_op(b"/registry/configmaps/default/t1", b"1"),
                      put_op(b"/registry/configmaps/default/t2", b"2")]))
    ok(c.delete(KEYS[1]))
    ok(c.put(KEYS[1], b"again"))
    compact = ok(c.put(KEYS[2], b"v2")).header.revision
    ok(c.put(KEYS[0], b"v3"))
    ok(c.call(c.kv.Compact, pb.CompactionRequest(revision=compact, physical=True)))
    for i in range(300):  # more than a page of key rows: leaf and branch pages
        ok(c.put(b"/registry/configmaps/many/%04d" % i, b"x" * 100))
    ok(c.put(b"/registry/secrets/default/big", bytes(range(256)) * 80))  # 20 KiB: overflow pages
    ok(c.delete(b"/registry/configmaps/many/0000", range_end=b"/registry/configmaps/many/0010"))
    ok(c.put(b"/registry/pods/tenant-a/q", b"late", lease=LEASE))
    return compact


def kvs(c: Client, revision: int = 0):
    resp = ok(c.get(**ALL, revision=revision))
    return resp.header.revision, [(kv.key, kv.create_revision, kv.mod_revision, kv.version,
                                   kv.lease, kv.value) for kv in resp.kvs]


def run(*argv, cwd=None) -> str:
    p = subprocess.run([str(a) for a in argv], capture_output=True, text=True, timeout=120, cwd=cwd)
    assert p.returncode == 0, f"{argv[:3]} failed:\n{p.stdout}\n{p.stderr}"
    return p.stdout


def save_and_restore(kf, tmp_path):
    """The snapshot saved from `kf`, its status, and a real etcd 3.7.3 serving its restore."""
    path = tmp_path / "kf.db"
    run(etcdctl37_binary(), f"--endpoints={kf.endpoint}", "snapshot", "save", path)
    status = json.loads(run(etcdutl_binary(), "snapshot", "status", path, "-w", "json"))
    workdir = tmp_path / "restored"
    workdir.mkdir()
    run(etcdutl_binary(), "snapshot", "restore", path, "--data-dir", workdir / "etcd-data")
    return status, start_etcd(workdir, binary=etcd37_binary())


@pytest.mark.parametrize("target", ["embedded", "topology"])
def test_snapshot_restores_into_etcd(server_factory, tmp_path, target):
    kf = server_factory("kubefabric") if target == "embedded" else server_factory.three_shards()
    c = Client(kf.endpoint)
    compact = write_history(c)
    head, want = kvs(c)
    status, etcd = save_and_restore(kf, tmp_path)
    e = Client(etcd.endpoint)
    try:
        assert status["revision"] == head and status["totalKey"] == len(want)
        assert kvs(e) == (head, want)
        for rev in (compact, compact + 1, compact + 3, head - 1):
            assert kvs(e, rev) == kvs(c, rev), f"at revision {rev}"
        assert e.get(b"a", revision=compact - 1).details == "etcdserver: mvcc: required revision has been compacted"
        ttl = ok(e.call(e.lease.LeaseTimeToLive, pb.LeaseTimeToLiveRequest(ID=LEASE, keys=True)))
        assert ttl.grantedTTL == 600 and 500 < ttl.TTL <= 600
        assert sorted(ttl.keys) == [b"/registry/leases/kube-system/l", b"/registry/pods/tenant-a/q"]
        # the restored etcd goes on from the snapshot's revision
        assert ok(e.put(b"/after", b"1")).header.revision == head + 1
        if target == "embedded":  # every row of the key bucket, as etcd hashes them
            want_hash = ok(c.call(c.maintenance.HashKV, pb.HashKVRequest(revision=head))).hash
            got = ok(e.call(e.maintenance.HashKV, pb.HashKVRequest(revision=head)))
            assert (got.hash, got.compact_revision) == (want_hash, compact)
            # Maintenance.Hash: of KubeFabric's own snapshot, so stable until something changes
            first = ok(c.call(c.maintenance.Hash, pb.HashRequest()))
            assert first.hash == ok(c.call(c.maintenance.Hash, pb.HashRequest())).hash
            assert first.header.revision == head
            ok(c.put(KEYS[0], b"v4"))
            assert ok(c.call(c.maintenance.Hash, pb.HashRequest())).hash != first.hash
    finally:
        e.close()
        c.close()
        etcd.stop()

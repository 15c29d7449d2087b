"""Maintenance.Snapshot restored into a real etcd (issue 20 point 2): a history written to
KubeFabric (harness.snapshots.write_history), saved by etcd 3.7.3's own `etcdctl snapshot save`,
read by `etcdutl snapshot status` (bbolt's integrity check included), restored by `etcdutl
snapshot restore` into a data dir that a real etcd 3.7.3 then serves: the same keys, values,
create/mod revisions and versions at the head and at older revisions, the same compaction
point, the lease with its keys attached.

Embedded (one SQLite shard: etcd's HashKV of the restored store equals KubeFabric's, which
checks every row of the key bucket) and a topology of three shards on SQLite, PostgreSQL and
MariaDB (the snapshot taken at one revision across them).
"""
from __future__ import annotations

import pytest

from harness.client import Client
from harness.snapshots import KEYS, hash_kv, kvs, ok, restore, same_history, save, write_history
from kubefabric.proto.etcdserverpb import rpc_pb2 as pb


@pytest.mark.parametrize("target", ["embedded", "topology"])
def test_snapshot_restores_into_etcd(server_factory, tmp_path, target):
    kf = server_factory("kubefabric") if target == "embedded" else server_factory.three_shards()
    c = Client(kf.endpoint)
    compact = write_history(c)
    head, want = kvs(c)
    status = save(kf.endpoint, tmp_path / "kf.db")
    assert status["revision"] == head and status["totalKey"] == len(want)
    etcd = restore(tmp_path / "kf.db", tmp_path / "restored")
    e = Client(etcd.endpoint)
    try:
        same_history(c, e, compact, head)
        # the restored etcd goes on from the snapshot's revision
        assert ok(e.put(b"/after", b"1")).header.revision == head + 1
        if target == "embedded":  # every row of the key bucket, as etcd hashes them
            assert hash_kv(e, head) == hash_kv(c, head) == (hash_kv(c, head)[0], compact)
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

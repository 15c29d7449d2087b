"""etcd snapshots in tests (tests/snapshot): a history to write, the state to compare, and the
real tools: etcd 3.7.3's `etcdctl snapshot save`, `etcdutl snapshot status|restore`, and a real
etcd 3.7.3 started on a restored data dir."""
from __future__ import annotations

import json
import subprocess
from pathlib import Path

from harness.client import Client
from harness.stream import Stream
from harness.servers import Server, etcd37_binary, etcdctl37_binary, etcdutl_binary, start_etcd
from kubefabric.proto.etcdserverpb import rpc_pb2 as pb

LEASE = 0x77
ALL = dict(key=b"\0", range_end=b"\0")
# keys of the three-shard topology (harness.servers.THREE_SHARDS): default, tenants, events
KEYS = [b"/registry/configmaps/default/a", b"/registry/pods/tenant-a/p", b"/registry/events/default/e"]
LEASED = [b"/registry/leases/kube-system/l", b"/registry/pods/tenant-a/q"]


def ok(resp):
    assert not hasattr(resp, "code"), resp
    return resp


def put_op(key, value):
    return pb.RequestOp(request_put=pb.PutRequest(key=key, value=value))


def write_history(c: Client) -> int:
    """Several bbolt pages of key rows (branch pages), a value bigger than a page (overflow
    pages), a txn of several keys (sub revisions), deletions, a key re-created after its
    deletion, a compaction and a lease with two keys. Returns the compact revision."""
    ok(c.call(c.lease.LeaseGrant, pb.LeaseGrantRequest(ID=LEASE, TTL=600)))
    for k in KEYS:
        ok(c.put(k, b"v1"))
    ok(c.put(LEASED[0], b"held", lease=LEASE))
    ok(c.put(KEYS[0], b"v2"))
    ok(c.txn(success=[put_op(b"/registry/configmaps/default/t1", b"1"),
                      put_op(b"/registry/configmaps/default/t2", b"2")]))
    ok(c.delete(KEYS[1]))
    ok(c.put(KEYS[1], b"again"))
    compact = ok(c.put(KEYS[2], b"v2")).header.revision
    ok(c.put(KEYS[0], b"v3"))
    ok(c.call(c.kv.Compact, pb.CompactionRequest(revision=compact, physical=True)))
    for i in range(300):
        ok(c.put(b"/registry/configmaps/many/%04d" % i, b"x" * 100))
    ok(c.put(b"/registry/secrets/default/big", bytes(range(256)) * 80))  # 20 KiB
    ok(c.delete(b"/registry/configmaps/many/0000", range_end=b"/registry/configmaps/many/0010"))
    ok(c.put(LEASED[1], b"late", lease=LEASE))
    return compact


def kvs(c: Client, revision: int = 0):
    """(header revision, every key with its revisions, version, lease and value)."""
    resp = ok(c.get(**ALL, revision=revision))
    return resp.header.revision, [(kv.key, kv.create_revision, kv.mod_revision, kv.version,
                                   kv.lease, kv.value) for kv in resp.kvs]


def same_history(a: Client, b: Client, compact: int, head: int, leased=LEASED) -> None:
    """Both serve the same keys at the head and at older revisions, the same events (and their
    previous versions) to a watch from the compaction point, the same compaction point and the
    lease with its keys."""
    assert kvs(a) == kvs(b)
    for rev in (compact, compact + 1, compact + 3, head - 1):
        assert kvs(a, rev) == kvs(b, rev), f"at revision {rev}"
    assert watched(a, compact + 1, head) == watched(b, compact + 1, head)  # prev_kvs too
    for c in (a, b):
        assert c.get(b"a", revision=compact - 1).details == "etcdserver: mvcc: required revision has been compacted"
        ttl = ok(c.call(c.lease.LeaseTimeToLive, pb.LeaseTimeToLiveRequest(ID=LEASE, keys=True)))
        assert ttl.grantedTTL == 600 and 500 < ttl.TTL <= 600, ttl
        assert sorted(ttl.keys) == sorted(leased)


def watched(c: Client, start: int, head: int) -> list:
    """The events (with prev_kv) of a watch on every key from `start` up to `head`."""
    stream = Stream(c.watch.Watch)
    try:
        stream.send(pb.WatchRequest(create_request=pb.WatchCreateRequest(
            key=ALL["key"], range_end=ALL["range_end"], start_revision=start, prev_kv=True)))
        out: list = []
        while not out or out[-1][1][2] < head:
            resp = stream.recv(timeout=10)
            assert not hasattr(resp, "code") and not resp.canceled, resp
            out += [(ev.type, (ev.kv.key, ev.kv.create_revision, ev.kv.mod_revision, ev.kv.version,
                               ev.kv.lease, ev.kv.value),
                     (ev.prev_kv.key, ev.prev_kv.mod_revision, ev.prev_kv.version, ev.prev_kv.value))
                    for ev in resp.events]
        return out
    finally:
        stream.close()


def hash_kv(c: Client, revision: int):
    r = ok(c.call(c.maintenance.HashKV, pb.HashKVRequest(revision=revision)))
    return r.hash, r.compact_revision


def run(*argv, ok_rc: bool = True) -> subprocess.CompletedProcess:
    p = subprocess.run([str(a) for a in argv], capture_output=True, text=True, timeout=180)
    if ok_rc:
        assert p.returncode == 0, f"{argv[:3]} failed:\n{p.stdout}\n{p.stderr}"
    return p


def save(endpoint: str, path: Path) -> dict:
    """`etcdctl snapshot save` (etcd 3.7.3's) from `endpoint`, then `etcdutl snapshot status`."""
    run(etcdctl37_binary(), f"--endpoints={endpoint}", "snapshot", "save", path)
    return json.loads(run(etcdutl_binary(), "snapshot", "status", path, "-w", "json").stdout)


def restore(path: Path, workdir: Path) -> Server:
    """A real etcd 3.7.3 serving `etcdutl snapshot restore` of `path`."""
    workdir.mkdir()
    run(etcdutl_binary(), "snapshot", "restore", path, "--data-dir", workdir / "etcd-data")
    return start_etcd(workdir, binary=etcd37_binary())

"""kv-router on a topology, end to end with real servers: pods of namespace tenant-a on a
PostgreSQL shard service, everything else on the router's embedded SQLite shard.

- a cluster-wide list, paginated and pinned at one revision, is exactly the store at that
  revision; a cluster-wide watch from an old revision sees every change once, in revision order;
- a write that would span shards is refused naming them, and nothing of it is applied; a txn of
  reads only is answered at one snapshot across the shards;
- a lease spans shards: revoking it (or letting it expire) deletes its keys on every shard;
- compaction reaches every shard;
- reloading the topology: appended rules apply, a change that would re-route existing keys or
  rewrite a rule is refused with the reason logged, and the old topology keeps serving.
"""
from __future__ import annotations

import os
import random
import signal
import threading
import time

import grpc
import pytest

from harness.client import Client, Failure
from harness.servers import start_router, start_shard
from harness.stream import WatchStream
from harness.topology import topology_yaml
from kubefabric.proto.etcdserverpb import rpc_pb2 as pb
from kubefabric.proto.kubefabric.shard.v1 import shard_pb2 as spb
from kubefabric.proto.kubefabric.shard.v1 import shard_pb2_grpc

SHARDS = {"main": "embedded", "tenants": "grpc://{tenants}"}
TENANT_A_PODS = {"namespace": "tenant-a", "resources": ["pods"], "shard": "tenants"}
TOPOLOGY = topology_yaml(SHARDS, [TENANT_A_PODS], default="main")
APPENDED = topology_yaml(SHARDS, [TENANT_A_PODS, {"prefix": "/registry/widgets/", "shard": "tenants"}],
                         default="main")
REROUTING = topology_yaml(SHARDS, [TENANT_A_PODS, {"prefix": "/registry/configmaps/", "shard": "tenants"}],
                          default="main")
REWRITTEN = TOPOLOGY.replace("tenant-a", "tenant-z")


@pytest.fixture
def routed(request, tmp_path):
    """(router Server, tenants shard Server, topology path)."""
    db = request.getfixturevalue("postgres_server")
    name = f"routing_{os.getpid()}_{int(time.time() * 1000) % 10**8}"
    db.create_database(name)
    tenants = start_shard(tmp_path, "postgres", db.dsn(name), name="tenants")
    path = tmp_path / "topology.yaml"
    path.write_text(TOPOLOGY.format(tenants=tenants.endpoint))
    router = start_router(tmp_path, topology=path)
    yield router, tenants, path
    router.stop()
    tenants.stop()


def keys_on_shard(shard_endpoint: str, prefix: bytes) -> list[bytes]:
    """Keys stored on one shard service, asked directly through its Shard API."""
    with grpc.insecure_channel(shard_endpoint) as ch:
        resp = shard_pb2_grpc.ShardStub(ch).Range(spb.RangeRequest(
            range=pb.RangeRequest(key=prefix, range_end=prefix[:-1] + bytes([prefix[-1] + 1]),
                                  keys_only=True)), timeout=5)
    return [kv.key for kv in resp.range.kvs]


def ok(resp):
    assert not isinstance(resp, Failure), resp
    return resp


def test_cluster_wide_list_and_watch(routed):
    router, tenants, _ = routed
    c = Client(router.endpoint)
    rng = random.Random(5)
    names = [f"/registry/pods/{ns}/p{i}".encode() for ns in ("tenant-a", "tenant-b", "tenant-c")
             for i in range(6)]
    log = []  # (revision, key, value or None) of every acknowledged change
    for step in range(120):
        key = rng.choice(names)
        if rng.random() < 0.2:
            resp = ok(c.delete(key))
            if resp.deleted:
                log.append((resp.header.revision, key, None))
        else:
            value = f"v{step}".encode()
            log.append((ok(c.put(key, value)).header.revision, key, value))
    revisions = [r for r, _, _ in log]
    assert revisions == sorted(revisions) and len(set(revisions)) == len(revisions)
    assert set(keys_on_shard(tenants.endpoint, b"/registry/pods/")) <= {
        k for k in names if b"/tenant-a/" in k}, "tenant-a pods must be on the PostgreSQL shard only"

    pinned = log[len(log) // 2][0]
    expected = {}
    for rev, key, value in log:
        if rev <= pinned:
            expected[key] = value
    expected = {k: v for k, v in expected.items() if v is not None}
    seen, start = {}, b"/registry/pods/"
    while True:  # kube-apiserver's paging: limit, continue after the last key, pinned revision
        page = ok(c.get(start, range_end=b"/registry/pods0", limit=4, revision=pinned))
        for kv in page.kvs:
            assert kv.key not in seen
            seen[kv.key] = kv.value
        if not page.more:
            break
        start = page.kvs[-1].key + b"\0"
    assert seen == expected

    w = WatchStream(c)
    w.created(b"/registry/", range_end=b"/registry0", start_revision=2)
    events = []
    while len(events) < len(log):
        events.extend(e for response in w.events(1) for e in response.events)
    got = [(e.kv.mod_revision, e.kv.key, e.kv.value if e.type == 0 else None) for e in events]
    assert got == log, "the merged watch must replay every change once, in revision order"
    ok(c.put(b"/registry/pods/tenant-a/live", b"1"))
    ok(c.put(b"/registry/pods/tenant-b/live", b"2"))
    live = [e for response in w.events(2) for e in response.events]
    assert [e.kv.key for e in live] == [b"/registry/pods/tenant-a/live", b"/registry/pods/tenant-b/live"]
    w.close()
    c.close()


def test_spanning_writes_are_refused(routed):
    router, _, _ = routed
    c = Client(router.endpoint)
    put = lambda k: pb.RequestOp(request_put=pb.PutRequest(key=k, value=b"x"))  # noqa: E731
    before = ok(c.get(b"\0", range_end=b"\0")).header.revision
    resp = c.txn(success=[put(b"/registry/pods/tenant-a/x"), put(b"/registry/pods/tenant-b/x")])
    assert isinstance(resp, Failure) and resp.code == "FAILED_PRECONDITION", resp
    assert "main" in resp.details and "tenants" in resp.details
    resp = c.delete(b"/registry/pods/", range_end=b"/registry/pods0")
    assert isinstance(resp, Failure) and resp.code == "FAILED_PRECONDITION", resp
    read = pb.RequestOp(request_range=pb.RangeRequest(key=b"/registry/pods/tenant-a/x"))
    resp = c.txn(success=[read, put(b"/registry/pods/tenant-b/x")])  # one write is enough
    assert isinstance(resp, Failure) and resp.code == "FAILED_PRECONDITION", resp
    after = ok(c.get(b"\0", range_end=b"\0"))
    assert after.count == 0 and after.header.revision == before, "nothing may be applied"
    c.close()


def test_read_only_txn_is_one_snapshot(routed):
    """A writer sets A (tenants shard) then B (main shard) to 1, 2, 3...; read-only txns reading
    both, with a compare on each, must see the store at one revision: never B ahead of A, every
    value no newer than the txn's header revision, the compares decided on the same state."""
    router, _, _ = routed
    a, b = b"/registry/pods/tenant-a/snap", b"/registry/pods/tenant-b/snap"
    writer, reader = Client(router.endpoint), Client(router.endpoint)
    stop = threading.Event()

    def write() -> None:
        i = 0
        while not stop.is_set():
            i += 1
            ok(writer.put(a, b"%06d" % i))
            ok(writer.put(b, b"%06d" % i))

    thread = threading.Thread(target=write, daemon=True)
    thread.start()
    try:
        seen = set()
        deadline = time.monotonic() + 8
        while time.monotonic() < deadline or len(seen) < 20:
            resp = ok(reader.txn(
                compare=[pb.Compare(key=a, target=pb.Compare.VERSION, result=pb.Compare.GREATER, version=0),
                         pb.Compare(key=b, target=pb.Compare.VERSION, result=pb.Compare.GREATER, version=0)],
                success=[pb.RequestOp(request_range=pb.RangeRequest(key=a)),
                         pb.RequestOp(request_range=pb.RangeRequest(key=b))],
                failure=[pb.RequestOp(request_range=pb.RangeRequest(key=a))]))
            if not resp.succeeded:  # B not written yet: then A alone was read
                continue
            got_a, got_b = (r.response_range.kvs[0] for r in resp.responses)
            rev = resp.header.revision
            assert got_b.value <= got_a.value, f"B ahead of A: {got_a} {got_b} at {rev}"
            assert max(got_a.mod_revision, got_b.mod_revision) <= rev, resp
            assert all(r.response_range.header.revision == rev for r in resp.responses), resp
            seen.add((got_a.value, got_b.value))
            assert time.monotonic() < deadline + 30, f"only {len(seen)} distinct snapshots"
    finally:
        stop.set()
        thread.join(10)
        writer.close()
        reader.close()
    assert any(x != y for x, y in seen), "never read between the two writes: the test proved nothing"


def test_lease_spans_shards(routed):
    router, _, _ = routed
    c = Client(router.endpoint)
    lease = ok(c.call(c.lease.LeaseGrant, pb.LeaseGrantRequest(TTL=2))).ID
    keys = [b"/registry/pods/tenant-a/l", b"/registry/pods/tenant-b/l"]
    for key in keys:
        ok(c.put(key, b"v", lease=lease))
    ttl = ok(c.call(c.lease.LeaseTimeToLive, pb.LeaseTimeToLiveRequest(ID=lease, keys=True)))
    assert sorted(ttl.keys) == sorted(keys)
    ok(c.call(c.lease.LeaseRevoke, pb.LeaseRevokeRequest(ID=lease)))
    assert all(not ok(c.get(k)).kvs for k in keys)

    expiring = ok(c.call(c.lease.LeaseGrant, pb.LeaseGrantRequest(TTL=2))).ID
    for key in keys:
        ok(c.put(key, b"v", lease=expiring))
    deadline = time.monotonic() + 10
    while any(ok(c.get(k)).kvs for k in keys):
        assert time.monotonic() < deadline, "an expired lease's keys must go on every shard"
        time.sleep(0.1)
    c.close()


def test_compaction_reaches_every_shard(routed):
    router, _, _ = routed
    c = Client(router.endpoint)
    for i in range(3):
        ok(c.put(b"/registry/pods/tenant-a/c", str(i).encode()))
        ok(c.put(b"/registry/pods/tenant-b/c", str(i).encode()))
    head = ok(c.get(b"/registry/pods/tenant-a/c")).header.revision
    ok(c.call(c.kv.Compact, pb.CompactionRequest(revision=head - 1)))
    for key in (b"/registry/pods/tenant-a/c", b"/registry/pods/tenant-b/c"):
        old = c.get(key, revision=head - 3)
        assert old == Failure("OUT_OF_RANGE", "etcdserver: mvcc: required revision has been compacted"), old
    again = c.call(c.kv.Compact, pb.CompactionRequest(revision=head - 1))
    assert again == Failure("OUT_OF_RANGE", "etcdserver: mvcc: required revision has been compacted")
    c.close()


def reload(router, path, text: str, tenants) -> None:
    path.write_text(text.format(tenants=tenants.endpoint))
    router.proc.send_signal(signal.SIGHUP)


def wait_log(router, needle: str, timeout: float = 10.0, count: int = 1) -> None:
    deadline = time.monotonic() + timeout
    while router.log().count(needle) < count:
        assert time.monotonic() < deadline, f"{needle!r} not logged:\n{router.log()[-2000:]}"
        time.sleep(0.05)


def test_topology_reload(routed):
    router, tenants, path = routed
    c = Client(router.endpoint)
    ok(c.put(b"/registry/configmaps/default/cm", b"1"))

    reload(router, path, REROUTING, tenants)
    wait_log(router, "would move existing key")
    wait_log(router, "refused")
    reload(router, path, REWRITTEN, tenants)
    wait_log(router, "refused", count=2)
    ok(c.put(b"/registry/configmaps/default/cm2", b"2"))
    assert keys_on_shard(tenants.endpoint, b"/registry/configmaps/") == [], \
        "a refused topology must not route anything"

    # a key written straight to the tenants shard (an old router, a tool) is found on reload
    wait_log(router, "misplaced keys (start-up): none on 2 shard(s)", timeout=60)
    with grpc.insecure_channel(tenants.endpoint) as ch:
        shard_pb2_grpc.ShardStub(ch).Put(spb.PutRequest(put=pb.PutRequest(key=b"/stray/x", value=b"x")),
                                         timeout=30)
    reload(router, path, APPENDED, tenants)
    wait_log(router, "topology reloaded")
    wait_log(router, "misplaced keys (topology reload): shard tenants holds 1 key(s) the topology "
                     "routes to other shards: /stray/x -> main", timeout=60)
    ok(c.put(b"/registry/widgets/default/w", b"3"))
    assert keys_on_shard(tenants.endpoint, b"/registry/widgets/") == [b"/registry/widgets/default/w"]
    assert ok(c.get(b"/registry/", range_end=b"/registry0")).count == 3
    c.close()

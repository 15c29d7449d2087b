"""A topology never shows keys it does not own (issue 14, item 2), as the README's own sequence
makes them: a shard service used alone behind `kubefabric serve --shard`, then reused as the
tenant-a shard of a topology whose default is the router's embedded shard.

- routed reads take each key from its owner only: a prefix list shows every key once, with the
  owner's value, counts and pages (limit, continue) exactly; a key deleted through the router is
  gone, even where a misplaced copy remains; read-only txns and lease key lists agree;
- watches (live and replayed) carry no event of a misplaced copy;
- the router reports them at start-up: a WARNING naming the shard and keys, and the metric
  kubefabric_topology_misplaced_keys{shard};
- `kubefabric topology check FILE --live` lists them; `kubefabric topology move FILE` moves the
  hidden ones to their owner through the router and, with --drop-shadowed, deletes the copies
  the owner already has or deleted after them; afterwards check --live finds none.
"""
from __future__ import annotations

import re
import subprocess
import sys
import time
import urllib.request

import grpc

from harness.client import Client, Failure
from harness.servers import free_port, start_router, start_shard, wait_log
from harness.stream import WatchStream
from kubefabric.proto.etcdserverpb import rpc_pb2 as pb
from kubefabric.proto.kubefabric.shard.v1 import shard_pb2 as spb
from kubefabric.proto.kubefabric.shard.v1 import shard_pb2_grpc

TOPOLOGY = """\
shards:
  - name: main
    endpoint: embedded
  - name: tenant-a
    endpoint: grpc://{a}
default: main
rules:
  - namespace: tenant-a
    resources: [pods]
    shard: tenant-a
"""
POD = b"/registry/pods/tenant-a/web"          # tenant-a's own
SHADOWED = b"/registry/configmaps/default/c"  # misplaced on tenant-a; main gets its own copy
HIDDEN = b"/hello"                            # misplaced on tenant-a; main never had it
DELETED = b"/registry/configmaps/default/d"   # misplaced; main's copy deleted through the router


def ok(resp):
    assert not isinstance(resp, Failure), resp
    return resp


def put_on_shard(endpoint: str, key: bytes, value: bytes) -> None:
    """A write straight to a shard service (what an old router, or one used alone, does)."""
    with grpc.insecure_channel(endpoint) as ch:
        shard_pb2_grpc.ShardStub(ch).Put(spb.PutRequest(put=pb.PutRequest(key=key, value=value)),
                                         timeout=30)


def kubefabric(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "kubefabric.cli", *args], capture_output=True,
                          text=True, timeout=300)


def misplaced_metric(metrics: str, shard: str) -> float | None:
    body = urllib.request.urlopen(f"http://{metrics}/metrics", timeout=10).read().decode()
    m = re.search(rf'^kubefabric_topology_misplaced_keys{{shard="{shard}"}} (\S+)$', body, re.M)
    return float(m[1]) if m else None


def test_misplaced_keys_are_never_shown_reported_and_moved(tmp_path):
    a = start_shard(tmp_path, "sqlite", f"sqlite://{tmp_path / 'shard-a'}", name="tenant-a")
    servers = [a]
    try:
        alone = start_router(tmp_path, [a])  # the README's first step: the shard used alone
        servers.append(alone)
        c = Client(alone.endpoint)
        for key in (POD, SHADOWED, HIDDEN, DELETED):
            ok(c.put(key, b"alone"))
        c.close()
        alone.stop()

        topology = tmp_path / "topology.yaml"
        topology.write_text(TOPOLOGY.format(a=a.endpoint))
        metrics = f"127.0.0.1:{free_port()}"
        router = start_router(tmp_path, extra=["--metrics-address", metrics], topology=topology)
        servers.append(router)
        c = Client(router.endpoint)
        ok(c.put(SHADOWED, b"routed"))
        ok(c.put(DELETED, b"routed"))
        ok(c.delete(DELETED))
        ok(c.put(b"/registry/configmaps/default/e", b"routed"))

        want = {POD: b"alone", SHADOWED: b"routed", b"/registry/configmaps/default/e": b"routed"}
        everything = ok(c.get(b"\0", range_end=b"\0"))
        assert {kv.key: kv.value for kv in everything.kvs} == want
        assert [kv.key for kv in everything.kvs] == sorted(want) and everything.count == len(want)
        assert ok(c.get(b"\0", range_end=b"\0", count_only=True)).count == len(want)
        assert not ok(c.get(HIDDEN)).kvs and not ok(c.get(DELETED)).kvs
        seen, start, rev = [], b"/", everything.header.revision  # kube-apiserver's paging
        while True:
            page = ok(c.get(start, range_end=b"\0", limit=1, revision=rev))
            assert page.count == len(want) - len(seen), page
            seen.extend(kv.key for kv in page.kvs)
            if not page.more:
                break
            start = page.kvs[-1].key + b"\0"
        assert seen == sorted(want)
        txn = ok(c.txn(compare=[pb.Compare(key=SHADOWED, target=pb.Compare.VALUE,
                                           result=pb.Compare.EQUAL, value=b"routed")],
                       success=[pb.RequestOp(request_range=pb.RangeRequest(key=b"\0", range_end=b"\0"))]))
        assert txn.succeeded and [kv.key for kv in txn.responses[0].response_range.kvs] == sorted(want)

        # watches: a replay from the start and a live write straight to the shard
        w = WatchStream(c)
        w.created(b"\0", range_end=b"\0", start_revision=1)
        # the owners' history only: POD's put on tenant-a, four changes on main
        replayed = [e for r in w.events(5, timeout=20) for e in r.events]
        assert [(e.kv.key, e.type) for e in replayed] == [
            (POD, 0), (SHADOWED, 0), (DELETED, 0), (DELETED, 1),
            (b"/registry/configmaps/default/e", 0)], replayed
        put_on_shard(a.endpoint, b"/stray/live", b"x")
        ok(c.put(b"/registry/pods/tenant-a/after", b"1"))
        live = [e for r in w.events(1, timeout=20) for e in r.events]
        assert [e.kv.key for e in live] == [b"/registry/pods/tenant-a/after"], live
        w.close()

        log = wait_log(router, "routes to other shards", timeout=60)
        line = next(ln for ln in log.splitlines() if "routes to other shards" in ln)
        assert " WARNING " in line and "shard tenant-a holds 3 key(s)" in line, line
        assert "docs/topology.md#misplaced-keys" in line, line
        deadline = time.monotonic() + 30
        while misplaced_metric(metrics, "tenant-a") is None and time.monotonic() < deadline:
            time.sleep(0.5)
        assert misplaced_metric(metrics, "tenant-a") >= 3
        assert misplaced_metric(metrics, "main") in (None, 0.0)

        listed = kubefabric("topology", "check", str(topology), "--live")
        assert listed.returncode == 1, listed
        lines = listed.stdout.splitlines()
        assert lines[0].endswith("valid: 2 shard(s), 1 rule(s), default main"), listed
        assert sorted(lines[1:]) == sorted([
            "/hello on tenant-a, routed to main",
            "/registry/configmaps/default/c on tenant-a, routed to main",
            "/registry/configmaps/default/d on tenant-a, routed to main",
            "/stray/live on tenant-a, routed to main"]), listed
        assert "main: embedded in kv-router, not scanned" in listed.stderr

        dry = kubefabric("topology", "move", str(topology), "--endpoints", f"http://{router.endpoint}",
                         "--dry-run")
        assert dry.returncode == 1 and "would move" in dry.stdout, dry  # the shadowed one stays
        assert "the owner deleted the key" in dry.stdout, dry
        assert not ok(c.get(HIDDEN)).kvs, "a dry run moved something"
        moved = kubefabric("topology", "move", str(topology), "--endpoints", f"http://{router.endpoint}",
                           "--drop-shadowed")
        assert moved.returncode == 0, moved
        assert "deleted the shadowed copy (value alone)" in moved.stdout, moved
        assert ok(c.get(HIDDEN)).kvs[0].value == b"alone"
        assert ok(c.get(SHADOWED)).kvs[0].value == b"routed"
        assert ok(c.get(b"/stray/live")).kvs[0].value == b"x"
        assert not ok(c.get(DELETED)).kvs, "a key deleted through the router came back"
        again = kubefabric("topology", "check", str(topology), "--live")
        assert again.returncode == 0 and len(again.stdout.splitlines()) == 1, again
        c.close()
    finally:
        for s in reversed(servers):
            s.stop()

"""Marking ranges indexed in a running system, as an operator does it: kv-router (embedded SQLite
shard `main`) and a PostgreSQL shard service (`tenants`) read one topology file; adding
`index:` to two rules makes the router's embedded shard and the shard service (its --topology,
re-read when the file changes) build their indexes online; `kubefabric topology status --wait`
reports them ready, the shard service's /metrics says so, and queries are then answered from
the indexes with the same results as before."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.request
from contextlib import closing

import grpc
import pytest

from harness.client import Client
from harness.servers import free_port, start_router, start_shard, wait_log
from kubefabric.proto.kubefabric.query.v1 import query_pb2 as qpb
from kubefabric.proto.kubefabric.query.v1 import query_pb2_grpc

L = qpb.LabelRequirement
TOPOLOGY = """\
shards:
  - {{name: main, endpoint: embedded}}
  - {{name: tenants, endpoint: "grpc://{tenants}"}}
default: main
rules:
  - namespace: tenant-a
    resources: [pods]
    shard: tenants{pods_index}
  - customresource: {{group: example.com, resource: widgets}}
    shard: main{widgets_index}
"""


def obj(ns: str, name: str, app: str) -> bytes:
    return json.dumps({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": ns, "labels": {"app": app}},
                       "spec": {"customer": f"c{len(name) % 3}"}}).encode()


def query(endpoint: str, start: bytes, end: bytes, rev: int = 0, **kw) -> qpb.QueryResponse:
    with grpc.insecure_channel(endpoint) as ch:
        return query_pb2_grpc.QueryStub(ch).Query(qpb.QueryRequest(
            key=start, range_end=end, revision=rev,
            labels=[L(key="app", operator=L.EQUALS, values=["web"])], **kw), timeout=30)


def status(endpoint: str, *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "kubefabric.cli", "topology", "status",
                           "--endpoints", f"http://{endpoint}", *extra],
                          capture_output=True, text=True, timeout=180)


@pytest.fixture
def stack(request, tmp_path):
    """(router, tenants shard service, topology path, shard metrics port); the file has no
    index yet."""
    db = request.getfixturevalue("postgres_server")
    name = f"index_{os.getpid()}_{int(time.time() * 1000) % 10**8}"
    db.create_database(name)
    topology, port, metrics = tmp_path / "topology.yaml", free_port(), free_port()
    topology.write_text(TOPOLOGY.format(tenants=f"127.0.0.1:{port}", pods_index="",
                                        widgets_index=""))
    tenants = start_shard(tmp_path, "postgres", db.dsn(name), [
        "--topology", str(topology), "--metrics-address", f"127.0.0.1:{metrics}"],
        name="tenants", port=port)
    try:
        router = start_router(tmp_path, topology=topology)
    except BaseException:
        tenants.stop()
        raise
    yield router, tenants, topology, metrics
    router.stop()
    tenants.stop()


def test_indexes_are_built_online_and_answer_queries(stack):
    router, tenants, topology, metrics = stack
    port = tenants.endpoint.rsplit(":", 1)[1]
    with closing(Client(router.endpoint)) as c:
        for i in range(300):
            for ns in ("tenant-a",):
                c.put(f"/registry/pods/{ns}/p{i:03d}".encode(), obj(ns, f"p{i}", ("web", "db")[i % 2]))
            c.put(f"/registry/example.com/widgets/ns{i % 3}/w{i:03d}".encode(),
                  obj(f"ns{i % 3}", f"w{i}", ("web", "db", "api")[i % 3]))
    pods = (b"/registry/pods/tenant-a/", b"/registry/pods/tenant-a0")
    widgets = (b"/registry/example.com/widgets/", b"/registry/example.com/widgets0")
    before = {r: query(router.endpoint, *r) for r in (pods, widgets)}
    assert not before[pods].indexed and len(before[pods].kvs) == 150
    assert not before[widgets].indexed and len(before[widgets].kvs) == 100
    empty = status(router.endpoint)
    assert empty.returncode == 0 and "no indexes" in empty.stdout, empty

    # mark both ranges indexed: the router and the shard service see the file change
    topology.write_text(TOPOLOGY.format(
        tenants=f"127.0.0.1:{port}", pods_index="\n    index: {labels: true}",
        widgets_index="\n    index: {labels: true, fields: [spec.customer]}"))
    wait_log(router, "topology reloaded", timeout=60)
    wait_log(tenants, "index rule(s) for shard tenants", timeout=60)
    with closing(Client(router.endpoint)) as c:  # writes go on while the indexes are built
        for i in range(300, 340):
            c.put(f"/registry/pods/tenant-a/p{i:03d}".encode(), obj("tenant-a", f"p{i}", "db"))
    done = status(router.endpoint, "--wait", "120s")
    assert done.returncode == 0, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].split() == ["SHARD", "INDEX", "STATE"]
    assert any(line.startswith("main ") and "customresource widgets.example.com [labels, "
               "spec.customer]" in line and "ready" in line for line in lines), done.stdout
    assert any(line.startswith("tenants ") and "namespace tenant-a, resources pods [labels]"
               in line and "ready" in line for line in lines), done.stdout

    text = urllib.request.urlopen(f"http://127.0.0.1:{metrics}/metrics", timeout=10).read().decode()
    assert ('kubefabric_index_ready{index="namespace tenant-a, resources pods [labels]",'
            'shard="tenants"} 1.0') in text, [ln for ln in text.splitlines() if "index" in ln]

    for r, old in before.items():
        again = query(router.endpoint, *r, rev=old.header.revision)
        assert again.indexed, r
        assert [kv.key for kv in again.kvs] == [kv.key for kv in old.kvs]
        assert [kv.value for kv in again.kvs] == [kv.value for kv in old.kvs]
    # a query wider than every index: each shard reads its part of the range, merged
    both = query(router.endpoint, b"/registry/", b"/registry0", limit=1000)
    assert not both.indexed and len(both.kvs) == 150 + 100

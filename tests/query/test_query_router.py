"""The Query API as kv-router serves it (kubefabric.query.v1.Query beside the etcd services):
the embedded shard, and a topology whose range spans shards on SQLite and PostgreSQL (one
snapshot revision, matches merged in key order, paging across shards)."""
from __future__ import annotations

import json
from contextlib import closing

import grpc
import pytest

from harness.client import Client
from kubefabric.proto.kubefabric.query.v1 import query_pb2 as qpb
from kubefabric.proto.kubefabric.query.v1 import query_pb2_grpc

L = qpb.LabelRequirement
PODS, PODS_END = b"/registry/pods/", b"/registry/pods0"
WEB = L(key="app", operator=L.EQUALS, values=["web"])


def pod(ns: str, name: str, app: str) -> bytes:
    return json.dumps({"apiVersion": "v1", "kind": "Pod", "metadata": {
        "name": name, "namespace": ns, "labels": {"app": app}}}).encode()


def load(endpoint: str) -> list[bytes]:
    """Pods in three namespaces (tenant-a's live on another shard in THREE_SHARDS); returns the
    keys of the app=web ones, in key order."""
    web = []
    with closing(Client(endpoint)) as c:
        for ns in ("default", "tenant-a", "tenant-b"):
            for i in range(4):
                app = "web" if i % 2 == 0 else "db"
                k = f"/registry/pods/{ns}/p{i}".encode()
                c.put(k, pod(ns, f"p{i}", app))
                if app == "web":
                    web.append(k)
    return sorted(web)


def query(endpoint: str, req: qpb.QueryRequest) -> qpb.QueryResponse:
    with grpc.insecure_channel(endpoint) as ch:
        return query_pb2_grpc.QueryStub(ch).Query(req, timeout=30)


def walk(endpoint: str, limit: int, rev: int) -> tuple[list[bytes], set[int]]:
    """Every app=web pod at revision `rev`, `limit` per page."""
    keys, revs, start = [], set(), PODS
    while True:
        resp = query(endpoint, qpb.QueryRequest(key=start, range_end=PODS_END, labels=[WEB],
                                                limit=limit, revision=rev))
        keys += [kv.key for kv in resp.kvs]
        revs.add(resp.header.revision)
        assert len(resp.kvs) <= limit
        if not resp.more:
            return keys, revs
        start = resp.next_key
        with closing(Client(endpoint)) as c:  # a write between pages is not seen at the pinned revision
            c.put(b"/registry/pods/tenant-a/p00", pod("tenant-a", "p00", "web"))


@pytest.mark.parametrize("target", ["embedded", "topology"])
def test_router_serves_queries_across_shards_at_one_revision(server_factory, target):
    server = server_factory("kubefabric") if target == "embedded" else server_factory.three_shards()
    web = load(server.endpoint)
    resp = query(server.endpoint, qpb.QueryRequest(key=PODS, range_end=PODS_END, labels=[WEB]))
    assert [kv.key for kv in resp.kvs] == web
    assert all(json.loads(kv.value)["metadata"]["labels"]["app"] == "web" for kv in resp.kvs)
    for limit in (1, 2, 5):
        keys, revs = walk(server.endpoint, limit, resp.header.revision)
        assert keys == web and revs == {resp.header.revision}, limit
    # the write made while paging is there for a query at the newest revision
    latest = query(server.endpoint, qpb.QueryRequest(key=PODS, range_end=PODS_END, labels=[WEB]))
    assert b"/registry/pods/tenant-a/p00" in [kv.key for kv in latest.kvs]


def test_router_refuses_bad_queries_with_one_line(server_factory):
    server = server_factory("kubefabric")
    with pytest.raises(grpc.RpcError) as err:
        query(server.endpoint, qpb.QueryRequest(key=PODS, range_end=PODS_END, labels=[
            L(key="app", operator=L.IN)]))
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert err.value.details() == ("kubefabric: label requirement 1 (app in) takes at least one "
                                   "value, got 0")
    with pytest.raises(grpc.RpcError) as err:
        query(server.endpoint, qpb.QueryRequest(key=PODS, range_end=PODS_END, revision=10**6))
    assert err.value.details() == "etcdserver: mvcc: required revision is a future revision"

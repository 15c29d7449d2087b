"""The Query API on one shard (kubefabric.query), on every store (SQLite, PostgreSQL, MariaDB):
Kubernetes selector semantics, revisions, paging, undecodable values and request errors.

Expected results are written out by hand from the objects below (the differential tests of
the index compare the two evaluations with each other; these pin the semantics down)."""
from __future__ import annotations

import json

import grpc
import pytest

from kubefabric.etcd.errors import EtcdError
from kubefabric.proto.etcdserverpb import rpc_pb2 as pb
from kubefabric.proto.kubefabric.query.v1 import query_pb2 as qpb
from harness.shard.kit import run_shard

L = qpb.LabelRequirement
F = qpb.FieldRequirement
PREFIX = b"/registry/example.com/widgets/"
END = b"/registry/example.com/widgets0"

# name -> (namespace, labels, spec)
OBJECTS = {
    "a": ("ns1", {"app": "web", "tier": "fe"}, {"customer": "acme"}),
    "b": ("ns1", {"app": "web", "tier": "be"}, {"customer": "initech"}),
    "c": ("ns2", {"app": "db"}, {"customer": "acme", "replicas": 3}),
    "d": ("ns2", {}, {}),
    "e": ("", {"tier": "fe", "example.com/team": "x"}, {"customer": True}),  # cluster-scoped
}


def obj(name: str, ns: str, labels: dict, spec: dict) -> bytes:
    meta = {"name": name, "uid": f"uid-{name}", "labels": labels}
    if ns:
        meta["namespace"] = ns
    return json.dumps({"apiVersion": "example.com/v1", "kind": "Widget", "metadata": meta,
                       "spec": spec}).encode()


def key(name: str) -> bytes:
    ns = OBJECTS[name][0]
    return PREFIX + (f"{ns}/{name}" if ns else name).encode()


async def load(shard) -> int:
    for name, (ns, labels, spec) in OBJECTS.items():
        await shard.put(pb.PutRequest(key=key(name), value=obj(name, ns, labels, spec)))
    # values that are not Kubernetes objects never match a query
    await shard.put(pb.PutRequest(key=PREFIX + b"ns1/garbage", value=b"\x00not json"))
    await shard.put(pb.PutRequest(key=PREFIX + b"ns1/list", value=b"[1, 2]"))
    await shard.put(pb.PutRequest(key=PREFIX + b"ns1/nometa", value=b'{"kind": "Widget"}'))
    resp = await shard.range(pb.RangeRequest(key=b"\x00", count_only=True))
    return resp.header.revision


def names(resp: qpb.QueryResponse) -> list[str]:
    return [kv.key.rsplit(b"/", 1)[1].decode() for kv in resp.kvs]


def q(*reqs, **kw) -> qpb.QueryRequest:
    kw.setdefault("key", PREFIX)
    kw.setdefault("range_end", END)
    return qpb.QueryRequest(labels=[r for r in reqs if isinstance(r, L)],
                            fields=[r for r in reqs if isinstance(r, F)], **kw)


CASES = [
    ((), ["e", "a", "b", "c", "d"]),
    ((L(key="app", operator=L.EQUALS, values=["web"]),), ["a", "b"]),
    ((L(key="app", operator=L.NOT_EQUALS, values=["web"]),), ["e", "c", "d"]),
    ((L(key="tier", operator=L.IN, values=["fe", "be"]),), ["e", "a", "b"]),
    ((L(key="tier", operator=L.NOT_IN, values=["fe"]),), ["b", "c", "d"]),
    ((L(key="app", operator=L.EXISTS),), ["a", "b", "c"]),
    ((L(key="app", operator=L.DOES_NOT_EXIST),), ["e", "d"]),
    ((L(key="example.com/team", operator=L.EQUALS, values=["x"]),), ["e"]),
    ((L(key="app", operator=L.EQUALS, values=["web"]), L(key="tier", operator=L.NOT_EQUALS, values=["fe"])), ["b"]),
    ((F(path="metadata.name", operator=F.EQUALS, value="c"),), ["c"]),
    ((F(path="metadata.namespace", operator=F.EQUALS, value="ns2"),), ["c", "d"]),
    ((F(path="metadata.namespace", operator=F.EQUALS, value=""),), ["e"]),
    ((F(path="metadata.namespace", operator=F.NOT_EQUALS, value="ns1"),), ["e", "c", "d"]),
    ((F(path="metadata.namespace", operator=F.EQUALS, value="ns1"), L(key="tier", operator=L.EXISTS)), ["a", "b"]),
    ((L(key="app", operator=L.IN, values=["nothing"]),), []),
    # any field path (read from the objects: no index declares it here)
    ((F(path="spec.customer", operator=F.EQUALS, value="acme"),), ["a", "c"]),
    ((F(path="spec.customer", operator=F.EQUALS, value=""),), ["d"]),
    ((F(path="spec.customer", operator=F.EQUALS, value="true"),), ["e"]),
    ((F(path="spec.replicas", operator=F.EQUALS, value="3"),), ["c"]),
    ((F(path="spec.replicas", operator=F.NOT_EQUALS, value="3"),), ["e", "a", "b", "d"]),
]


def test_selectors_follow_kubernetes_semantics(store_factory):
    async def body(shard):
        await load(shard)
        for reqs, expected in CASES:
            resp = await shard.query(q(*reqs))
            assert names(resp) == expected, reqs
            assert not resp.more and not resp.next_key
    run_shard(store_factory, body)


def test_query_reads_the_requested_revision(store_factory):
    async def body(shard):
        before = await load(shard)
        # relabel a and delete c: the old revision still answers with the old objects
        await shard.put(pb.PutRequest(key=key("a"), value=obj("a", "ns1", {"app": "api"}, {})))
        await shard.delete_range(pb.DeleteRangeRequest(key=key("c")))
        web = L(key="app", operator=L.EXISTS)
        now = await shard.query(q(web))
        assert names(now) == ["a", "b"]
        assert now.header.revision == before + 2
        old = await shard.query(q(web, revision=before))
        assert names(old) == ["a", "b", "c"]
        assert old.header.revision == before
        assert json.loads(old.kvs[0].value)["metadata"]["labels"] == {"app": "web", "tier": "fe"}
        assert old.kvs[0].mod_revision < before + 1
        with pytest.raises(EtcdError) as err:
            await shard.query(q(web, revision=before + 10))
        assert err.value.message == "etcdserver: mvcc: required revision is a future revision"
        await shard.compact(before + 1, physical=True)
        with pytest.raises(EtcdError) as err:
            await shard.query(q(web, revision=before))
        assert err.value.code == grpc.StatusCode.OUT_OF_RANGE
        assert names(await shard.query(q(web, revision=before + 1))) == ["a", "b", "c"]
    run_shard(store_factory, body)


def test_limit_pages_through_the_matches_at_one_revision(store_factory):
    async def body(shard):
        rev = await load(shard)
        seen, start, pages = [], PREFIX, 0
        while True:
            resp = await shard.query(q(key=start, limit=2, revision=rev))
            pages += 1
            seen += names(resp)
            assert len(resp.kvs) <= 2 and resp.header.revision == rev
            if not resp.more:
                break
            assert resp.next_key == resp.kvs[-1].key + b"\x00"
            start = resp.next_key
            # a write between pages does not change what the pinned revision returns
            await shard.put(pb.PutRequest(key=PREFIX + b"ns1/aa", value=obj("aa", "ns1", {}, {})))
        assert seen == ["e", "a", "b", "c", "d"] and pages == 3
        keys_only = await shard.query(q(L(key="app", operator=L.EQUALS, values=["web"]), keys_only=True))
        assert [kv.value for kv in keys_only.kvs] == [b"", b""]
        assert keys_only.kvs[0].key == key("a") and keys_only.kvs[0].version == 1
        single = await shard.query(q(key=key("c"), range_end=b""))
        assert names(single) == ["c"]
    run_shard(store_factory, body)


@pytest.mark.parametrize("request_, problem", [
    (q(L(key="-bad", operator=L.EXISTS)), "label key '-bad'"),
    (q(L(key="app", operator=L.EQUALS, values=["a", "b"])), "takes exactly one value, got 2"),
    (q(L(key="app", operator=L.IN)), "takes at least one value, got 0"),
    (q(L(key="app", operator=L.EXISTS, values=["x"])), "takes no values, got 1"),
    (q(L(key="app", values=["x"])), "has no operator"),
    (q(L(key="app", operator=L.EQUALS, values=["no spaces"])), "label value 'no spaces'"),
    (q(F(path="metadata..name", operator=F.EQUALS, value="x")), "is not a field path"),
    (q(key=b""), "a query needs a key"),
    (q(limit=-1), "limit must not be negative"),
])
def test_bad_requests_are_refused_with_one_line(sqlite_kind, request_, problem):
    """(Checked before the store is read: SQLite alone.)"""
    async def body(shard):
        with pytest.raises(EtcdError) as err:
            await shard.query(request_)
        assert err.value.code == grpc.StatusCode.INVALID_ARGUMENT
        assert problem in err.value.message and "\n" not in err.value.message
    run_shard(sqlite_kind.store, body)

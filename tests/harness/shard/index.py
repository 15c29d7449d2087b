"""Shared by the index tests: a topology with index rules, random Kubernetes-like objects and
selectors, the oracle (the range at the revision, decoded and filtered: kubefabric.query.scan),
and waiting for an index to be ready."""
from __future__ import annotations

import asyncio
import json
import random

from harness.topology import topology_yaml
from kubefabric.etcd.keyrange import KeyRange
from kubefabric.index.maintain import read_states
from kubefabric.index.rules import index_rules
from kubefabric.proto.etcdserverpb import rpc_pb2 as pb
from kubefabric.proto.kubefabric.query.v1 import query_pb2 as qpb
from kubefabric.query.execute import response
from kubefabric.query.requirements import parse
from kubefabric.query.scan import scan
from kubefabric.shard.reads import resolve_rev
from kubefabric.topology.load import parse_topology

L, F = qpb.LabelRequirement, qpb.FieldRequirement

WIDGETS = b"/registry/example.com/widgets/"
WIDGETS_END = b"/registry/example.com/widgets0"
PODS = b"/registry/pods/"
PODS_END = b"/registry/pods0"

TOPOLOGY = topology_yaml({"main": "embedded"}, [
    {"customresource": {"group": "example.com", "resource": "widgets"}, "shard": "main",
     "index": {"labels": True, "fields": ["spec.customer", "spec.size"]}},
    {"prefix": "/registry/pods/", "shard": "main", "index": {}}])

LABELS = {"app": ["web", "db", "api"], "tier": ["fe", "be"], "env": ["prod", "dev", ""],
          "example.com/team": ["x", "y"]}
NAMESPACES = ["ns1", "ns2", "ns3"]
CUSTOMERS = ["acme", "initech", ""]


def rules(text: str = TOPOLOGY, shard: str = "main"):
    return index_rules(parse_topology(text), shard)


def random_object(rng: random.Random, name: str, ns: str) -> bytes:
    labels = {k: rng.choice(v) for k, v in LABELS.items() if rng.random() < 0.5}
    spec: dict = {}
    if rng.random() < 0.8:
        spec["customer"] = rng.choice(CUSTOMERS)
    if rng.random() < 0.6:
        spec["size"] = rng.choice([1, 2, True, "2", None, 2.5, [1], {"a": 1}])
    meta = {"name": name, "labels": labels, "uid": f"u-{rng.random()}"}
    if ns:
        meta["namespace"] = ns
    if rng.random() < 0.05:
        meta.pop("labels")
    return json.dumps({"apiVersion": "example.com/v1", "kind": "Widget", "metadata": meta,
                       "spec": spec}).encode()


def random_key(rng: random.Random, prefix: bytes = WIDGETS, names: int = 25) -> tuple[bytes, str, str]:
    ns = rng.choice(NAMESPACES + [""])
    name = f"w{rng.randrange(names):02d}"
    return prefix + (f"{ns}/{name}" if ns else name).encode(), name, ns


def random_requirements(rng: random.Random, fields=("spec.customer", "spec.size")):
    labels, fields_out = [], []
    for _ in range(rng.choice([0, 1, 1, 2, 2, 3])):
        if rng.random() < 0.65:
            key = rng.choice(list(LABELS))
            op = rng.choice([L.EQUALS, L.NOT_EQUALS, L.IN, L.NOT_IN, L.EXISTS, L.DOES_NOT_EXIST])
            pool = LABELS[key] + ["zzz"]
            values = ([rng.choice(pool)] if op in (L.EQUALS, L.NOT_EQUALS) else
                      rng.sample(pool, rng.randint(1, 3)) if op in (L.IN, L.NOT_IN) else [])
            labels.append(L(key=key, operator=op, values=values))
        else:
            path = rng.choice(["metadata.name", "metadata.namespace", *fields])
            value = {"metadata.name": lambda: f"w{rng.randrange(25):02d}",
                     "metadata.namespace": lambda: rng.choice(NAMESPACES + [""]),
                     "spec.customer": lambda: rng.choice(CUSTOMERS),
                     "spec.size": lambda: rng.choice(["1", "2", "true", ""])}[path]()
            fields_out.append(F(path=path, operator=rng.choice([F.EQUALS, F.NOT_EQUALS]),
                                value=value))
    return labels, fields_out


async def oracle(shard, req: qpb.QueryRequest) -> qpb.QueryResponse:
    """The query answered by reading the range and filtering it (no index), on one snapshot."""
    reqs = parse(req)
    rng = KeyRange.of(req.key, req.range_end)
    async with shard.store.snapshot() as cur:
        head = await shard.read_head(cur)
        rev = resolve_rev(req.revision, head, shard.state.compact_rev)
        rows = [] if rng.empty else await scan(cur, rng, rev, head, reqs, req.limit)
    return response(shard.state, rows, rev, req, indexed=False)


async def states(shard) -> dict:
    async with shard.store.snapshot() as cur:
        return await read_states(cur)


async def wait_ready(shard, timeout: float = 120.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        st = await states(shard)
        if st and all(s.ready for s in st.values()) and len(st) == len(shard.index.rules):
            return
        assert loop.time() < deadline, (f"index not ready after {timeout}s: "
                                        f"{[(s.description, s.ready, s.rows) for s in st.values()]}")
        await asyncio.sleep(0.05)


def comparable(resp: qpb.QueryResponse) -> tuple:
    return ([(kv.key, kv.create_revision, kv.mod_revision, kv.version, kv.lease, kv.value)
             for kv in resp.kvs], resp.more, resp.next_key, resp.header.revision)


async def random_history(shard, rng: random.Random, steps: int) -> None:
    lease = (await shard.lease_grant(0, 3600))[0]
    for _ in range(steps):
        roll = rng.random()
        prefix = WIDGETS if rng.random() < 0.8 else PODS
        key, name, ns = random_key(rng, prefix)
        if roll < 0.6:
            await shard.put(pb.PutRequest(key=key, value=random_object(rng, name, ns),
                                          lease=lease if rng.random() < 0.05 else 0))
        elif roll < 0.75:
            await shard.delete_range(pb.DeleteRangeRequest(key=key))
        elif roll < 0.8:  # not a Kubernetes object: stored, never matched
            await shard.put(pb.PutRequest(key=key, value=rng.choice([b"", b"{", b"[]", b"\xff\x00"])))
        elif roll < 0.95:  # several objects at one revision
            ops = []
            for k in dict.fromkeys(random_key(rng, prefix) for _ in range(rng.randint(2, 4))):
                ops.append(pb.RequestOp(request_put=pb.PutRequest(key=k[0], value=random_object(rng, k[1], k[2]))))
            await shard.txn(pb.TxnRequest(success=ops))
        else:  # a namespace at once
            start = prefix + rng.choice([b"ns1/", b"ns2/"])
            await shard.delete_range(pb.DeleteRangeRequest(key=start, range_end=start[:-1] + b"0"))
    await shard.lease_revoke(lease)


def random_range(rng: random.Random, head_keys: list[bytes]) -> tuple[bytes, bytes]:
    kind = rng.random()
    if kind < 0.4:
        return WIDGETS, WIDGETS_END
    if kind < 0.55:
        ns = rng.choice([b"ns1/", b"ns2/", b"ns3/"])
        return WIDGETS + ns, WIDGETS + ns[:-1] + b"0"
    if kind < 0.65 and head_keys:
        return rng.choice(head_keys), b""  # one key
    if kind < 0.8 and head_keys:
        a, b = sorted(rng.sample(head_keys, 2)) if len(head_keys) > 1 else (head_keys[0], head_keys[0] + b"\x00")
        return a, b
    if kind < 0.9:
        return PODS, PODS_END
    return b"/registry/", b"/registry0"  # partly outside every index: scanned


def expect_indexed(start: bytes, end: bytes, labels, fields) -> bool:
    """Widgets keep labels and their fields; pods only metadata.name and metadata.namespace."""
    inside = lambda lo, hi: start >= lo and (end and end <= hi or not end and start < hi)  # noqa: E731
    if inside(WIDGETS, WIDGETS_END):
        return True
    metadata_only = not labels and all(f.path.startswith("metadata.") for f in fields)
    return inside(PODS, PODS_END) and metadata_only


async def check_queries(shard, rng: random.Random, n: int, lo: int, hi: int) -> tuple[int, int]:
    """n random queries (each walked to its last page) against the oracle; (indexed, total)."""
    keys = [kv.key for kv in (await shard.range(pb.RangeRequest(key=b"/", range_end=b"0"))).kvs]
    indexed = total = 0
    for _ in range(n):
        start, end = random_range(rng, keys)
        labels, fields = random_requirements(rng)
        rev = rng.choice([0, rng.randint(lo, hi)])
        limit = rng.choice([0, 0, 1, 3, 7])
        req = qpb.QueryRequest(key=start, range_end=end, revision=rev, limit=limit,
                               labels=labels, fields=fields, keys_only=rng.random() < 0.1)
        while True:
            ours, theirs = await shard.query(req), await oracle(shard, req)
            assert comparable(ours) == comparable(theirs), req
            total += 1
            indexed += ours.indexed
            if expect_indexed(start, end, labels, fields):
                assert ours.indexed, f"not answered from the index: {req}"
            if not ours.more:
                break
            req.key, req.revision = ours.next_key, ours.header.revision
    return indexed, total

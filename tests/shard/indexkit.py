"""Shared by the index tests: a topology with index rules, random Kubernetes-like objects and
selectors, the oracle (the range at the revision, decoded and filtered: kubefabric.query.scan),
and waiting for an index to be ready."""
from __future__ import annotations

import asyncio
import json
import random

from kubefabric.etcd.keyrange import KeyRange
from kubefabric.index.maintain import read_states
from kubefabric.index.rules import index_rules
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

TOPOLOGY = """
shards: [{name: main, endpoint: embedded}]
rules:
  - customresource: {group: example.com, resource: widgets}
    shard: main
    index: {labels: true, fields: [spec.customer, spec.size]}
  - prefix: /registry/pods/
    shard: main
    index: {}
"""

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

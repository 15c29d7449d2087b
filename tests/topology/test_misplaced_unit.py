"""Which keys of a shard may be misplaced (kubefabric.topology.misplaced): `owned(topology, name)`
never claims a key the topology routes elsewhere, claims every key of prefix-like rules (so a
scan of what is left examines only misplaced keys there), and `scan` over a real embedded shard
finds exactly the misplaced keys, within its budget."""
from __future__ import annotations

import asyncio

from hypothesis import given, settings, strategies as st

from harness.topology import topology_yaml
from kubefabric.proto.etcdserverpb import rpc_pb2 as pb
from kubefabric.topology import parse_topology
from kubefabric.topology.misplaced import owned, scan, suspect

from test_topology_routing import PROP, TOPO, keys


def inside(key: bytes, intervals) -> bool:
    return any(lo <= key and (hi == b"" or key < hi) for lo, hi in intervals)


@settings(max_examples=800, deadline=None)
@given(keys)
def test_owned_intervals_never_claim_another_shards_key(k):
    for topo in (PROP, parse_topology(TOPO, "t.yaml")):
        owners = [name for name in topo.shards if inside(k, owned(topo, name))]
        assert len(owners) <= 1, (k, owners)
        if owners:
            assert topo.route(k) == owners[0], (k, owners)


def test_prefix_rules_leave_only_other_shards_keys_suspect():
    topo = parse_topology(topology_yaml({"main": "embedded", "a": "grpc://a:1"},
                                        [{"prefix": "/registry/events/", "shard": "a"},
                                         {"namespace": "t1", "resources": ["pods"], "shard": "a"}],
                                        default="main"), "p.yaml")
    assert suspect(topo, "main") == [(b"/registry/events/", b"/registry/events0"),
                                     (b"/registry/pods/t1/", b"/registry/pods/t10")]
    assert suspect(topo, "a") == [(b"", b"/registry/events/"), (b"/registry/events0", b"/registry/pods/t1/"),
                                  (b"/registry/pods/t10", b"")]
    assert suspect(topo, "main", b"/registry/pods/", b"/registry/pods0") == [
        (b"/registry/pods/t1/", b"/registry/pods/t10")]


def test_scan_finds_exactly_the_misplaced_keys(tmp_path):
    from kubefabric.shard.core import Shard
    from backend_sqlite.store import SqliteStore

    topo = parse_topology(TOPO, "t.yaml")
    stored = [b"/registry/events/x/e", b"/registry/pods/tenant-a/p", b"/registry/pods/tenant-b/p",
              b"/registry/configmaps/tenant-b/c", b"/registry/leases/kube-node-lease/n",
              b"/registry/example.com/gadgets/g", b"/hello", b"compact_rev_key", b"\x00", b"\xff\xff"]
    stored += [b"/registry/pods/default/p%03d" % i for i in range(30)]  # main's own

    async def go():
        shard = Shard(SqliteStore(str(tmp_path / "main")))
        await shard.open()
        try:
            for k in stored:
                await shard.put(pb.PutRequest(key=k, value=b"v"))
            want = sorted((k, topo.route(k)) for k in stored if topo.route(k) != "main")
            whole = await scan(shard, "main", topo)
            assert sorted(whole.misplaced) == want and whole.complete
            some = await scan(shard, "main", topo, budget=3)
            assert not some.complete and some.examined == 3
            part = await scan(shard, "main", topo, b"/registry/pods/", b"/registry/pods0")
            assert part.misplaced == [(b"/registry/pods/tenant-a/p", "tenants"),
                                      (b"/registry/pods/tenant-b/p", "tenants")]
            clean = await scan(shard, "tenants", topo, b"/registry/pods/tenant-a/", b"/registry/pods/tenant-a0")
            assert clean.misplaced == [] and clean.complete
        finally:
            await shard.close()

    asyncio.run(go())

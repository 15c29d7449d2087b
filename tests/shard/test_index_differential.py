"""The index answers every query exactly as the scan does (the range at the revision, decoded
and filtered), at every retained revision, on SQLite, PostgreSQL and MariaDB: random objects,
labels, field values, deletions, undecodable values, compaction, random selectors, ranges,
revisions and page sizes. Queries on indexed ranges must come from the index (`indexed`)."""
from __future__ import annotations

import random

import pytest

from indexkit import (PODS, PODS_END, WIDGETS, WIDGETS_END, comparable, oracle, random_key,
                      random_object, random_requirements, rules, wait_ready)
from kubefabric.proto.etcdserverpb import rpc_pb2 as pb
from kubefabric.proto.kubefabric.query.v1 import query_pb2 as qpb
from shardkit import run_shard


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


@pytest.mark.parametrize("seed", [1, 2])
def test_index_equals_the_scan_at_every_revision(store_factory, seed, say):
    async def body(shard):
        rng = random.Random(seed)
        await wait_ready(shard)
        first = (await shard.status()).committed_rev
        await random_history(shard, rng, 250)
        mid = (await shard.status()).committed_rev
        await shard.compact(first + (mid - first) // 3, physical=True)
        await random_history(shard, rng, 150)
        head = (await shard.status()).committed_rev
        indexed, total = await check_queries(shard, rng, 150, shard.state.compact_rev, head)
        say(f"{store_factory.kind} seed {seed}: {total} query pages equal the scan, "
            f"{indexed} from the index, revisions {shard.state.compact_rev}..{head}")
        assert indexed > total // 3
    run_shard(store_factory, body, index_rules=rules())

"""Marking a range indexed on a shard that already holds objects: the index is built online in
short writer batches while writes go on, queries meanwhile read the range (and say so), the
readiness metric turns to 1, and then the index equals the scan at every retained revision,
including revisions from before the index existed. A leader that stops mid-way leaves a cursor
its successor resumes from; removing and re-adding a rule rebuilds the index. On SQLite,
PostgreSQL and MariaDB."""
from __future__ import annotations

import asyncio
import random
import time

from prometheus_client import REGISTRY

from harness.shard.index import (WIDGETS, WIDGETS_END, check_queries, comparable, oracle, random_history,
                      random_key, random_object, rules, states, wait_ready)
from kubefabric.index import maintain
from kubefabric.proto.etcdserverpb import rpc_pb2 as pb
from kubefabric.proto.kubefabric.query.v1 import query_pb2 as qpb
from harness.shard.kit import opened, run_shard

L = qpb.LabelRequirement
WEB = qpb.QueryRequest(key=WIDGETS, range_end=WIDGETS_END,
                       labels=[L(key="app", operator=L.EQUALS, values=["web"])])


def ready_metric(description: str) -> float | None:
    return REGISTRY.get_sample_value("kubefabric_index_ready",
                                     {"shard": "default", "index": description})


async def keep_writing(shard, rng: random.Random, stop: asyncio.Event, latencies: list) -> None:
    """Puts and deletes in the indexed range, one after another, until `stop`."""
    while not stop.is_set():
        key, name, ns = random_key(rng, names=60)
        t0 = time.monotonic()
        if rng.random() < 0.8:
            await shard.put(pb.PutRequest(key=key, value=random_object(rng, name, ns)))
        else:
            await shard.delete_range(pb.DeleteRangeRequest(key=key))
        latencies.append(time.monotonic() - t0)
        await asyncio.sleep(0)


def test_backfill_under_write_load(store_factory, monkeypatch, say):
    monkeypatch.setattr(maintain, "BACKFILL_BATCH", 40)  # many steps, many interleavings
    maintain.index_ready.clear()  # (a process-wide gauge: earlier tests' shards set it)
    # The backfill starts only once a query has seen the range unindexed (or after 60 s): on a
    # loaded CI machine the whole backfill could otherwise finish before the first query runs
    # (CI once, at load 5 on PostgreSQL, with a 10 s gate: no query saw it building).
    seen_building = None
    original = maintain.ShardIndex._backfill

    async def gated_backfill(self, shard, rule_id):
        try:
            await asyncio.wait_for(seen_building.wait(), 60)
        except asyncio.TimeoutError:
            pass  # a query never saw the range unindexed: the assertion below says so
        await original(self, shard, rule_id)
    monkeypatch.setattr(maintain.ShardIndex, "_backfill", gated_backfill)

    async def body(shard):
        nonlocal seen_building
        seen_building = asyncio.Event()
        rng = random.Random(11)
        await random_history(shard, rng, 500)
        before = (await shard.status()).committed_rev
        stop, latencies = asyncio.Event(), []
        writer = asyncio.create_task(keep_writing(shard, random.Random(12), stop, latencies))
        shard.index.configure(rules())  # the topology now marks widgets and pods indexed
        description = rules()[0].description
        scanned = 0
        while not all(s.ready for s in (await states(shard)).values()) or not await states(shard):
            ready = ready_metric(description)  # 1 only once the index is committed ready
            resp = await shard.query(WEB)
            expected = await oracle(shard, _at(WEB, resp.header.revision))
            assert comparable(resp) == comparable(expected)
            assert resp.indexed or ready != 1.0
            scanned += not resp.indexed
            if scanned:
                seen_building.set()
            await asyncio.sleep(0.01)
        during = len(latencies)
        await asyncio.sleep(0.2)
        stop.set()
        await writer  # (raises if a write failed)
        # the backfill task sets the gauge once the writer returns the committed last batch
        deadline = time.monotonic() + 10
        while ready_metric(description) != 1.0 and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        assert ready_metric(description) == 1.0
        assert scanned > 0, "the index was ready before any query could see it building"
        assert during >= 5, f"only {during} writes completed while the index was built"
        worst = max(latencies)
        say(f"{store_factory.kind}: backfill with {during} concurrent writes, slowest write "
            f"{worst * 1000:.0f} ms, {scanned} queries scanned meanwhile")
        assert worst < 5.0
        head = (await shard.status()).committed_rev
        indexed, total = await check_queries(shard, rng, 120, 1, head)
        assert indexed > total // 3
        # revisions from before the index existed are answered from it too
        old = await shard.query(_at(WEB, before))
        assert old.indexed and comparable(old) == comparable(await oracle(shard, _at(WEB, before)))
    run_shard(store_factory, body)


def _at(req: qpb.QueryRequest, rev: int) -> qpb.QueryRequest:
    out = qpb.QueryRequest()
    out.CopyFrom(req)
    out.revision = rev
    return out


def test_a_new_leader_resumes_the_backfill_and_a_readded_rule_is_rebuilt(store_factory, monkeypatch):
    monkeypatch.setattr(maintain, "BACKFILL_BATCH", 20)
    monkeypatch.setattr(maintain, "BACKFILL_MAX_PAUSE_S", 0.05)

    async def body():
        rng = random.Random(5)
        async with opened(store_factory()) as shard:
            await random_history(shard, rng, 400)
            shard.index.configure(rules())
            deadline = time.monotonic() + 60
            while not any(s.rows for s in (await states(shard)).values()):
                assert time.monotonic() < deadline
                await asyncio.sleep(0.01)
        async with opened(store_factory(), index_rules=rules()) as shard:  # closed mid-way
            resumed = {s.id: (s.cursor, s.rows, s.ready) for s in (await states(shard)).values()}
            assert any(cursor and not ready for cursor, _, ready in resumed.values()), resumed
            await wait_ready(shard)
            since = {s.id: s.since_rev for s in (await states(shard)).values()}
            head = (await shard.status()).committed_rev
            await check_queries(shard, rng, 60, 1, head)
        async with opened(store_factory(), index_rules=rules()) as shard:
            await wait_ready(shard)  # the same rules: kept as they were, not rebuilt
            assert {s.id: s.since_rev for s in (await states(shard)).values()} == since
            shard.index.configure(())  # removed from the topology: queries read the range
            while await states(shard):
                await asyncio.sleep(0.01)
            assert not (await shard.query(WEB)).indexed
            await random_history(shard, rng, 100)  # written while nothing indexes them
            shard.index.configure(rules())
            await wait_ready(shard)
            assert all(s.since_rev > max(since.values()) for s in (await states(shard)).values())
            head = (await shard.status()).committed_rev
            indexed, total = await check_queries(shard, rng, 80, 1, head)
            assert indexed > total // 3
    asyncio.run(body())

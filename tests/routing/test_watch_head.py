"""A router's watch start and progress answers cover writes another router acknowledged.

Several routers in front of one shard service (kv-router replicas, or `kubefabric serve --workers
N --shard ...`) each learn of the others' writes from their commit feed, which may lag behind
the acknowledgement. Before a watch "from now" starts or a progress request is answered, the
watcher registry asks its source's `refresh_head`: a RemoteShard raises its committed revision to
the leader's, a topology's shard set does so for each shard service. Here the routers follow no
feed at all, so only refresh_head can tell them; with no leader it gives up within HEAD_WAIT_S.
"""
from __future__ import annotations

import asyncio
import time

import pytest

from harness.servers import start_shard
from kubefabric.proto.etcdserverpb import rpc_pb2 as pb
from kubefabric.shardsvc.client import HEAD_WAIT_S, RemoteShard
from kubefabric.topology.shardset import ShardSet
from kubefabric.watch.registry import WatcherRegistry


@pytest.fixture
def shard(tmp_path):
    """One SQLite shard service, stopped after the test (a test may stop it first)."""
    server = start_shard(tmp_path, "sqlite", f"sqlite://{tmp_path / 'db'}")
    yield server
    server.stop()


def test_a_router_learns_the_revision_another_router_acknowledged(shard):
    async def main():
        ours, theirs = RemoteShard([shard.endpoint]), RemoteShard([shard.endpoint])
        await ours.open(wait_s=30.0, follow=False)
        await theirs.open(wait_s=30.0, follow=False)
        try:
            first = (await ours.put(pb.PutRequest(key=b"a", value=b"1"))).header.revision
            acked = first
            for i in range(3):  # acknowledged by the other router only
                acked = (await theirs.put(pb.PutRequest(key=b"b", value=b"%d" % i))).header.revision
            registry = WatcherRegistry(ours)
            assert registry.head == first < acked
            await registry.refresh_head()
            assert registry.head == acked
        finally:
            await ours.close()
            await theirs.close()
    asyncio.run(main())


def test_a_shard_set_raises_every_shard_service(tmp_path):
    shards = [start_shard(tmp_path, "sqlite", f"sqlite://{tmp_path / f'db{i}'}", name=f"s{i}")
              for i in range(2)]

    async def main():
        ours = [RemoteShard([s.endpoint], name=f"s{i}") for i, s in enumerate(shards)]
        theirs = RemoteShard([shards[1].endpoint], name="s1")
        for r in (*ours, theirs):
            await r.open(wait_s=30.0, follow=False)
        try:
            acked = (await theirs.put(pb.PutRequest(key=b"k", value=b"v"))).header.revision
            assert ours[1].state.committed < acked
            await ShardSet.refresh_head(_Set(ours))
            assert ours[1].state.committed == acked
        finally:
            for r in (*ours, theirs):
                await r.close()
    try:
        asyncio.run(main())
    finally:
        for s in shards:
            s.stop()


def test_without_a_leader_it_gives_up_in_time(shard):
    async def main():
        ours = RemoteShard([shard.endpoint])
        await ours.open(wait_s=30.0, follow=False)
        committed = ours.state.committed
        shard.stop()
        try:
            started = time.monotonic()
            await ours.refresh_head()  # no exception: the router's own view serves
            assert time.monotonic() - started < HEAD_WAIT_S + 1.0
            assert ours.state.committed == committed
        finally:
            await ours.close()
    asyncio.run(main())


class _Set:
    """The part of a ShardSet that refresh_head reads."""

    def __init__(self, shards: list):
        self.shards = {s.name: s for s in shards}

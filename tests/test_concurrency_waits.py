"""What a waiting Lock, Campaign or Observe leaves behind when its client goes away, or when the
server stops: nothing. kv-router runs in this process on an embedded SQLite shard (real gRPC on
loopback), so its watcher registry, pending waits and tasks can be inspected after each call.
The etcd-visible behaviour is compared with real etcd in tests/differential/test_concurrency.py.
"""
from __future__ import annotations

import asyncio
import socket
from types import SimpleNamespace

import grpc
import pytest

from kubefabric.proto.etcdserverpb import rpc_pb2 as pb
from kubefabric.proto.etcdserverpb import rpc_pb2_grpc as rpc
from kubefabric.proto.v3electionpb import v3election_pb2 as epb
from kubefabric.proto.v3electionpb import v3election_pb2_grpc as erpc
from kubefabric.proto.v3lockpb import v3lock_pb2 as lpb
from kubefabric.proto.v3lockpb import v3lock_pb2_grpc as lrpc


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(autouse=True)
def reopen_gate():
    """RouterServer.stop closes the process-wide admission gate; later tests need it open."""
    from kubefabric.rpc.handlers import GATE

    yield
    GATE.closed = False


async def start_router(data_dir):
    from kv_router.server import RouterServer, ServerConfig
    from kv_router.shards import open_embedded

    args = SimpleNamespace(sqlite_synchronous="NORMAL", max_txn_ops=128, quota_backend_bytes=0)
    shard = await open_embedded(str(data_dir), args)
    url = f"http://127.0.0.1:{free_port()}"
    router = RouterServer(shard, ServerConfig(listen_client_urls=[url], advertise_client_urls=[url]))
    await router.start()
    return router, shard, url.removeprefix("http://")


# tasks that come and go with any request: the shard writer's queue reader, gRPC's own, this test
OTHERS = {"Queue.get", "_handle_rpc", "_handle_cancellation_from_core", "_handle_exceptions",
          "abandoned_waits", "AioServer._request_call"}


async def settled(router, baseline: set, timeout: float = 5.0) -> list:
    """Wait until the router holds no watcher, wait or cleanup of a lock or election and runs
    no task beyond `baseline`; what is left over at the timeout."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        left = [*router.registry.watchers, *router.registry.catching_up, *router.recipe.waits,
                *router.recipe.cleanups, *router.election.observers,
                *(t for t in asyncio.all_tasks() if t not in baseline and not t.done()
                  and t.get_coro().__qualname__ not in OTHERS)]
        if not left or loop.time() > deadline:
            return left
        await asyncio.sleep(0.05)


async def abandoned_waits(tmp_path):
    router, shard, addr = await start_router(tmp_path / "kf")
    try:
        async with grpc.aio.insecure_channel(addr) as ch:
            lease, lock, el, kv = rpc.LeaseStub(ch), lrpc.LockStub(ch), erpc.ElectionStub(ch), rpc.KVStub(ch)
            for lease_id in (1, 2):
                await lease.LeaseGrant(pb.LeaseGrantRequest(ID=lease_id, TTL=60))
            await lock.Lock(lpb.LockRequest(name=b"l", lease=1))
            await el.Campaign(epb.CampaignRequest(name=b"e", lease=1, value=b"a"))
            baseline = set(asyncio.all_tasks())

            # a deadline while waiting: the wait ends, the contender's key is deleted
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await lock.Lock(lpb.LockRequest(name=b"l", lease=2), timeout=0.5)
            assert err.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
            with pytest.raises(grpc.aio.AioRpcError):
                await el.Campaign(epb.CampaignRequest(name=b"e", lease=2, value=b"b"), timeout=0.5)
            assert await settled(router, baseline) == []
            keys = await kv.Range(pb.RangeRequest(key=b"\0", range_end=b"\0"))
            assert [k.key for k in keys.kvs] == [b"e/1", b"l/1"]

            # a client that cancels its call: the same
            call = lock.Lock(lpb.LockRequest(name=b"l", lease=2))
            await asyncio.sleep(0.3)
            assert len(router.registry.watchers) == 1  # waiting on l/1's deletion, not polling
            call.cancel()
            observe = el.Observe(epb.LeaderRequest(name=b"e"))
            first = await observe.read()
            assert (first.kv.key, first.kv.value) == (b"e/1", b"a")
            observe.cancel()
            assert await settled(router, baseline) == []
            keys = await kv.Range(pb.RangeRequest(key=b"l/", range_end=b"l0"))
            assert [k.key for k in keys.kvs] == [b"l/1"]
    finally:
        await router.stop(0.5)
        await shard.close()


def test_an_abandoned_wait_leaves_nothing_behind(tmp_path):
    asyncio.run(abandoned_waits(tmp_path))


async def waits_at_shutdown(tmp_path):
    router, shard, addr = await start_router(tmp_path / "kf")
    stopped = False
    try:
        async with grpc.aio.insecure_channel(addr) as ch:
            lease, lock, el = rpc.LeaseStub(ch), lrpc.LockStub(ch), erpc.ElectionStub(ch)
            for lease_id in (1, 2):
                await lease.LeaseGrant(pb.LeaseGrantRequest(ID=lease_id, TTL=60))
            await lock.Lock(lpb.LockRequest(name=b"l", lease=1))
            waiting = asyncio.ensure_future(lock.Lock(lpb.LockRequest(name=b"l", lease=2), timeout=30))
            observe = el.Observe(epb.LeaderRequest(name=b"nobody"), timeout=30)
            await asyncio.sleep(0.3)
            loop = asyncio.get_running_loop()
            start = loop.time()
            await router.stop(10)  # the waits end at once: stop does not sit out its grace
            stopped = True
            assert loop.time() - start < 5
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await waiting
            assert (err.value.code(), err.value.details()) == (grpc.StatusCode.UNAVAILABLE,
                                                               "etcdserver: server stopped")
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await observe.read()
            assert err.value.code() == grpc.StatusCode.UNAVAILABLE
    finally:
        if not stopped:
            await router.stop(0.5)
        await shard.close()


def test_waits_end_when_the_server_stops(tmp_path):
    asyncio.run(waits_at_shutdown(tmp_path))

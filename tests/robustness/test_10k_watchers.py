"""10,000 watchers (100 streams × 100 watchers on one connection, with the default limits)
against `kubefabric serve`: every one is created, every one gets the event of one write to a key
it watches, and the router's RSS per watcher stays under a bound, so a per-watcher leak fails.

Half the watchers watch a prefix, half the written key itself, so both the range and the
single-key paths of the hub deliver."""
from __future__ import annotations

import asyncio
import time

import grpc

from kubefabric.proto.etcdserverpb import rpc_pb2 as pb
from kubefabric.proto.etcdserverpb import rpc_pb2_grpc as rpc

STREAMS = 100
PER_STREAM = 100
KEY = b"/load/x"
MAX_KIB_PER_WATCHER = 20


def rss_kib(pid: int) -> int:
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


def watch_request(i: int) -> pb.WatchRequest:
    if i % 2:
        return pb.WatchRequest(create_request=pb.WatchCreateRequest(key=KEY))
    return pb.WatchRequest(create_request=pb.WatchCreateRequest(key=b"/load/", range_end=b"/load0"))


class Stream:
    def __init__(self, stub: rpc.WatchStub):
        self.requests: asyncio.Queue = asyncio.Queue()
        self.call = stub.Watch(self._feed())
        self.ids: set[int] = set()

    async def _feed(self):
        while (req := await self.requests.get()) is not None:
            yield req

    async def add(self, first: int, n: int) -> None:
        for i in range(first, first + n):
            self.requests.put_nowait(watch_request(i))
        for _ in range(n):
            resp = await self.call.read()
            assert resp.created and not resp.canceled and resp.watch_id >= 0, resp
            self.ids.add(resp.watch_id)

    async def events(self) -> dict[int, list[int]]:
        """watch id -> revisions received, until every watcher of the stream has had one."""
        got: dict[int, list[int]] = {}
        while len(got) < len(self.ids):
            resp = await self.call.read()
            got.setdefault(resp.watch_id, []).extend(e.kv.mod_revision for e in resp.events)
        return got


async def run(endpoint: str, pid: int, say) -> None:
    async with grpc.aio.insecure_channel(endpoint) as channel:
        stub = rpc.WatchStub(channel)
        kv = rpc.KVStub(channel)
        await kv.Put(pb.PutRequest(key=b"/warmup", value=b"v"))
        idle = rss_kib(pid)
        t0 = time.monotonic()
        streams = [Stream(stub) for _ in range(STREAMS)]
        await asyncio.gather(*(s.add(0, 1) for s in streams))  # every stream open, 1 watcher
        with_streams = rss_kib(pid)
        await asyncio.gather(*(s.add(1, PER_STREAM - 1) for s in streams))
        created = time.monotonic() - t0
        rev = (await kv.Put(pb.PutRequest(key=KEY, value=b"hello"))).header.revision
        t1 = time.monotonic()
        received = await asyncio.wait_for(asyncio.gather(*(s.events() for s in streams)), 30)
        delivered = time.monotonic() - t1
        for s, got in zip(streams, received):
            assert set(got) == s.ids, "a watcher got nothing, or an unknown watch id came"
            assert all(revs == [rev] for revs in got.values()), "each watcher: exactly the one event"
        held = rss_kib(pid)
        watchers = STREAMS * PER_STREAM
        per_watcher = (held - with_streams) / (watchers - STREAMS)
        per_stream = (with_streams - idle) / STREAMS
        say(f"{watchers} watchers on {STREAMS} streams: created in {created:.1f}s, one write "
            f"delivered to all in {delivered * 1000:.0f} ms; router RSS {idle} KiB idle, {held} KiB "
            f"holding them: {per_watcher:.2f} KiB per watcher, {per_stream:.1f} KiB per stream, "
            f"{(held - idle) / watchers:.2f} KiB per watcher all in")
        assert per_watcher < MAX_KIB_PER_WATCHER, f"{per_watcher:.1f} KiB per watcher"
        assert (held - idle) / watchers < MAX_KIB_PER_WATCHER
        for s in streams:
            s.requests.put_nowait(None)
            s.call.cancel()


def test_ten_thousand_watchers(kf, say):
    server = kf()
    asyncio.run(run(server.endpoint, server.proc.pid, say))

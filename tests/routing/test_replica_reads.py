"""kv-router's reads of a shard service on one Reads stream per replica
(kubefabric.shardsvc.replicareads over kubefabric.shardsvc.mux), through RemoteShard against the
real ShardService served in-process over a stand-in shard core whose reads the test controls:

- once a replica's stream is open, Range and Query (with and without sync_rev) go on it (the
  service's unary Range/Query count every call they get), reads sent together share messages
  (ReadBatches; the service still answers Reads, a message per read), each answer is its own
  request's, and
  a read answered late does not hold back the others (out-of-order completion); a stream
  half-closed (replaced, as on a TLS reload) still answers the reads it carries;
- errors come back exactly as the unary call's (etcd's errors, the database being unavailable,
  an internal error), through the same RemoteShard mapping;
- a stream that breaks with a read in flight: the read is sent again unary and answered, later
  reads go unary until a new stream is open; a read unanswered past its timeout fails with
  DEADLINE_EXCEEDED; the service's shutdown (end_streams) ends the stream once its running reads
  are answered;
- with two replicas, a read left unanswered on one replica's stream is hedged to the other's.
Each on both carriers: a gRPC stream, and the batch lane the service advertises in its Status.
"""
from __future__ import annotations

import asyncio
import sys
import time
from types import SimpleNamespace

import grpc
import pytest

from kubefabric.etcd import errors
from kubefabric.etcd.errors import EtcdError
from kubefabric.proto.etcdserverpb import rpc_pb2 as pb
from kubefabric.proto.kubefabric.query.v1 import query_pb2 as qpb
from kubefabric.proto.mvccpb import kv_pb2
from kubefabric.proto.kubefabric.shard.v1 import shard_pb2 as spb
from kubefabric.proto.kubefabric.shard.v1 import shard_pb2_grpc
from kubefabric.shardsvc.client import RemoteShard
from kubefabric.shardsvc.lane import LaneServer, LaneStub
from kubefabric.shardsvc.service import ShardService


CARRIER = "grpc"  # the streams' carrier in this test: a gRPC stream, or the batch lane


@pytest.fixture(autouse=True, params=["grpc", "lane"])
def carrier(request, monkeypatch):
    """Every test runs with the stream on gRPC and on the batch lane (kubefabric.shardsvc.lane):
    the reads' outcomes must not depend on the carrier."""
    monkeypatch.setattr(sys.modules[__name__], "CARRIER", request.param)


class Unreachable(Exception):
    """The stand-in's "database cannot be reached" (the service's is_unavailable says so)."""


class StandInShard:
    """The shard core as ShardService uses it for reads and Status. A key's read answers with
    the key as value at mod revision `rev`; a key b"/slow..." waits for `release(key)`,
    b"/compacted", b"/down" and b"/bug" fail (an etcd error, the database, a bug)."""

    def __init__(self, rev: int):
        self.rev = rev
        self.is_leader = True
        self.state = SimpleNamespace(committed=rev, compact_rev=0)
        self.gates: dict[bytes, asyncio.Event] = {}
        self.seen_sync_revs: list[int] = []

    async def range(self, req: pb.RangeRequest, sync_rev: int = 0) -> pb.RangeResponse:
        self.seen_sync_revs.append(sync_rev)
        if req.key.startswith(b"/slow"):
            await self.gates.setdefault(req.key, asyncio.Event()).wait()
        elif req.key == b"/compacted":
            raise errors.COMPACTED
        elif req.key == b"/down":
            raise Unreachable("connection refused")
        elif req.key == b"/bug":
            raise ZeroDivisionError("division by zero")
        kv = kv_pb2.KeyValue(key=req.key, value=req.key, mod_revision=self.rev)
        return pb.RangeResponse(header=pb.ResponseHeader(revision=self.rev), kvs=[kv], count=1)

    def release(self, key: bytes) -> None:
        self.gates.setdefault(key, asyncio.Event()).set()

    async def query(self, req, sync_rev: int = 0):
        self.seen_sync_revs.append(sync_rev)
        return qpb.QueryResponse(header=pb.ResponseHeader(revision=self.rev))

    async def sync(self, sync_rev: int) -> None:
        pass

    async def status(self) -> spb.StatusResponse:
        return spb.StatusResponse(committed_rev=self.rev, compact_rev=-1, role="leader", term=1)


class CountingService(ShardService):
    """The real service; its unary reads counted (a read that went unary)."""

    def __init__(self, node):
        super().__init__(node, is_unavailable=lambda exc: isinstance(exc, Unreachable))
        self.unary_reads = 0
        self.read_messages = self.stream_reads = 0

    def stream_kind(self, name: str):
        """The ReadBatches messages counted, on gRPC and on the lane alike."""
        request_type, run, response, failure, (requests_of, message_of) = super().stream_kind(name)

        def counted(msg):
            self.read_messages += 1
            self.stream_reads += len(msg.requests)
            return requests_of(msg)
        return request_type, run, response, failure, (counted, message_of)

    async def Range(self, request, context):
        self.unary_reads += 1
        return await ShardService.Range(self, request, context)

    async def Query(self, request, context):
        self.unary_reads += 1
        return await ShardService.Query(self, request, context)


async def serve_replica(rev: int):
    """An in-process Shard API server over a StandInShard: (server, service, endpoint)."""
    core = StandInShard(rev)
    node = SimpleNamespace(local=lambda: core, shard=core, address="", leader_address="",
                           name="standin")
    service = CountingService(node)
    server = grpc.aio.server()
    shard_pb2_grpc.add_ShardServicer_to_server(service, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    if CARRIER == "lane":
        service.lane_server = LaneServer(service, 1 << 22)
        service.lane = await service.lane_server.start("127.0.0.1:0")
    return server, service, f"127.0.0.1:{port}"


async def open_stream(shard: RemoteShard, target: int, timeout: float = 5.0):
    """The open Reads stream to replica `target` (reads trigger its opening)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        slot = shard.reads.slots.get(target)
        if slot is not None and slot.stream is not None and slot.stream.is_open:
            on_lane = isinstance(slot.stream.stub(), LaneStub)
            assert on_lane == (CARRIER == "lane"), f"the stream is on the wrong carrier ({CARRIER})"
            return slot.stream
        await shard.reads.call(target, "Range", spb.RangeRequest(range=pb.RangeRequest(key=b"/w")), 5.0)
        await asyncio.sleep(0.02)
    raise AssertionError(f"no Reads stream to replica {target} opened within {timeout}s")


def run(body, replicas: int = 1) -> None:
    """asyncio.run(body(shard, services)) with a RemoteShard on `replicas` in-process replicas."""
    async def main():
        served = [await serve_replica(100 + i) for i in range(replicas)]
        shard = RemoteShard([endpoint for _, _, endpoint in served], name="standin")
        try:
            await shard.open(wait_s=5.0, follow=False)
            await body(shard, [service for _, service, _ in served])
        finally:
            await shard.close()
            for server, service, _ in served:
                if CARRIER == "lane":
                    await service.lane_server.stop(0)
                await server.stop(0)
    asyncio.run(main())


def _range(key: bytes) -> pb.RangeRequest:
    return pb.RangeRequest(key=key)


def test_reads_go_on_the_stream_answered_by_id_out_of_order():
    async def body(shard, services):
        service, core = services[0], services[0].node.local()
        await open_stream(shard, 0)
        unary = service.unary_reads
        # the slow read waits; 50 others sent after it are each answered with their own key
        messages, reads = service.read_messages, service.stream_reads
        slow = asyncio.ensure_future(shard.range(_range(b"/slow")))
        fast = await asyncio.wait_for(asyncio.gather(*(shard.range(_range(b"/k%02d" % i))
                                                      for i in range(50))), 5.0)
        assert [r.kvs[0].value for r in fast] == [b"/k%02d" % i for i in range(50)]
        assert service.stream_reads - reads == 51
        assert service.read_messages - messages < 10, "reads sent together were not coalesced"
        assert not slow.done()
        core.release(b"/slow")
        assert (await slow).kvs[0].value == b"/slow"
        # a linearizable read (sync_rev: the leader's Replicas.write path) and a Query too
        got = await shard.range(_range(b"/lin"), sync_rev=7)
        assert got.kvs[0].value == b"/lin" and core.seen_sync_revs[-1] == 7
        assert (await shard.query(qpb.QueryRequest(), sync_rev=0)).header.revision == 100
        assert service.unary_reads == unary, "a read went unary while the stream was open"
        assert shard.state.committed == 100
        # half-closed (as when a TLS reload replaces it): what it carries is still answered
        stream = shard.reads.slots[0].stream
        late = [await stream.send("range", spb.RangeRequest(range=_range(b"/slow-%d" % i)))
                for i in range(3)]
        finished = asyncio.ensure_future(stream.finish())
        await asyncio.sleep(0.1)
        assert not stream.is_open and not any(a.done() for a in late)
        for i in range(3):
            core.release(b"/slow-%d" % i)
        got = await asyncio.wait_for(asyncio.gather(*late), 5.0)
        assert [m.range.range.kvs[0].value for m in got] == [b"/slow-%d" % i for i in range(3)]
        await asyncio.wait_for(finished, 5.0)

    run(body)


@pytest.mark.parametrize("key,expected", [
    (b"/compacted", errors.COMPACTED),
    (b"/down", errors.DB_UNAVAILABLE),
    (b"/bug", EtcdError(grpc.StatusCode.INTERNAL, "kubefabric: internal error: division by zero")),
])
def test_errors_on_the_stream_are_the_unary_calls(key, expected):
    async def body(shard, services):
        stream = await open_stream(shard, 0)
        stub = shard_pb2_grpc.ShardStub(shard.channels[0])
        with pytest.raises(grpc.aio.AioRpcError) as unary:
            await stub.Range(spb.RangeRequest(range=_range(key)))
        assert (unary.value.code(), unary.value.details()) == (expected.code, expected.message)
        unary_reads = services[0].unary_reads
        with pytest.raises(EtcdError) as streamed:
            await shard.range(_range(key))
        assert (streamed.value.code, streamed.value.message) == (expected.code, expected.message)
        if expected is errors.COMPACTED:
            assert streamed.value is errors.COMPACTED   # the canonical instance, as unary
        assert services[0].unary_reads == unary_reads and stream.is_open

    run(body)


def test_a_broken_stream_falls_back_to_unary_then_reopens():
    async def body(shard, services):
        service, core = services[0], services[0].node.local()
        stream = await open_stream(shard, 0)
        slow = asyncio.ensure_future(shard.range(_range(b"/slow")))
        await asyncio.sleep(0.1)
        unary = service.unary_reads
        stream.close()   # broken with the read in flight: it is sent again, unary
        await asyncio.sleep(0.1)
        assert service.unary_reads == unary + 1
        core.release(b"/slow")
        assert (await slow).kvs[0].value == b"/slow"
        # the next read goes unary (and opens a new stream), later ones on the new stream
        assert (await shard.range(_range(b"/a"))).kvs[0].value == b"/a"
        assert service.unary_reads == unary + 2
        reopened = await open_stream(shard, 0)
        assert reopened is not stream
        unary = service.unary_reads
        assert (await shard.range(_range(b"/b"))).kvs[0].value == b"/b"
        assert service.unary_reads == unary

    run(body)


def test_a_read_on_the_stream_times_out_and_the_service_ends_its_streams():
    async def body(shard, services):
        service, core = services[0], services[0].node.local()
        stream = await open_stream(shard, 0)
        started = time.monotonic()
        with pytest.raises(grpc.aio.AioRpcError) as late:
            await shard.reads.call(0, "Range", spb.RangeRequest(range=_range(b"/slow-late")), 0.3)
        assert late.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
        assert 0.3 <= time.monotonic() - started < 2 and stream.is_open
        core.release(b"/slow-late")  # (the service finishes a read its caller gave up)
        # shutdown: the stream stops reading, answers the read it runs, then ends
        slow = asyncio.ensure_future(shard.range(_range(b"/slow")))
        await asyncio.sleep(0.1)
        service.end_streams()
        await asyncio.sleep(0.1)
        assert not slow.done()
        core.release(b"/slow")
        assert (await slow).kvs[0].value == b"/slow"
        deadline = time.monotonic() + 5
        while stream.is_open and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        assert not stream.is_open, "the Reads stream did not end at the service's shutdown"

    run(body)


def test_a_read_unanswered_on_one_replicas_stream_is_hedged_to_the_other():
    async def body(shard, services):
        await open_stream(shard, 0)
        await open_stream(shard, 1)
        services[0].node.local().rev = services[1].node.local().rev = 300
        unary = [s.unary_reads for s in services]
        first = shard.replicas._next % 2
        # the replica the read goes to first never answers it; the other does
        services[first].node.local().range = _never
        started = time.monotonic()
        got = await asyncio.wait_for(shard.range(_range(b"/h")), 5.0)
        assert got.kvs[0].value == b"/h" and time.monotonic() - started >= 0.25
        assert [s.unary_reads for s in services] == unary, "a hedged read went unary"
        assert first in shard.replicas.unresponsive

    run(body, replicas=2)


async def _never(req, sync_rev=0):
    await asyncio.Event().wait()

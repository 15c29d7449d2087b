"""The WriteBatches stream (kubefabric.shardsvc.writes over kubefabric.shardsvc.mux, coalesced):
the real ShardService served in-process over a stand-in shard core whose puts the test holds,
and a WriteStream as kv-router and `--workers` use it:

- writes sent together travel in fewer messages than writes, and answers ready together come
  back in one message; each caller still gets its own write's answer, errors included;
- writes that arrive one by one while a message waits for its answers wait for them and share
  the next message; a write left unanswered holds the next message back HOLD_S, no longer;
- the old Writes stream (one write per message) is still served, for older callers.
"""
from __future__ import annotations

import asyncio
from types import SimpleNamespace

import grpc

from kubefabric.etcd import errors
from kubefabric.etcd.errors import EtcdError
from kubefabric.proto.etcdserverpb import rpc_pb2 as pb
from kubefabric.proto.kubefabric.shard.v1 import shard_pb2 as spb
from kubefabric.proto.kubefabric.shard.v1 import shard_pb2_grpc
from kubefabric.shardsvc.service import ShardService
from kubefabric.shardsvc.writes import WriteStream


class HeldShard:
    """The shard core as the service's writes use it: a put waits until `gate` is set, then
    answers with the revision its key names (b"/k<rev>"); b"/lease" fails with etcd's error."""

    def __init__(self):
        self.is_leader = True
        self.state = SimpleNamespace(committed=1)
        self.gate = asyncio.Event()
        self.arrived = 0

    async def put(self, req: pb.PutRequest, sync_rev: int = 0) -> pb.PutResponse:
        self.arrived += 1
        await self.gate.wait()
        if req.key == b"/lease":
            raise errors.LEASE_NOT_FOUND
        return pb.PutResponse(header=pb.ResponseHeader(revision=int(req.key[2:])))


class CountingService(ShardService):
    """The real service; the writes each WriteBatches message carried, each way."""

    def __init__(self, node):
        super().__init__(node)
        self.carried_in: list[int] = []
        self.carried_out: list[int] = []

    async def WriteBatches(self, request_iterator, context):
        async def counted():
            async for msg in request_iterator:
                self.carried_in.append(len(msg.requests))
                yield msg
        async for answer in ShardService.WriteBatches(self, counted(), context):
            self.carried_out.append(len(answer.responses))
            yield answer


class SingleWrites(WriteStream):
    """A caller of the old Writes stream: one write per message."""

    METHOD = "Writes"
    COALESCED = False


def run(body) -> None:
    async def main():
        core = HeldShard()
        service = CountingService(SimpleNamespace(local=lambda: core, shard=core, address="",
                                                  leader_address="", name="held"))
        server = grpc.aio.server()
        shard_pb2_grpc.add_ShardServicer_to_server(service, server)
        port = server.add_insecure_port("127.0.0.1:0")
        await server.start()
        channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
        try:
            await body(shard_pb2_grpc.ShardStub(channel), core, service)
        finally:
            await channel.close()
            await server.stop(0)
    asyncio.run(main())


def run_stream(body, hold_s: float | None = None, kind: type[WriteStream] = WriteStream) -> None:
    """run() with an open stream of `kind`: body(stream, core, service)."""
    async def on_stream(stub, core, service):
        stream = kind(lambda: stub, "held")
        if hold_s is not None:
            stream.HOLD_S = hold_s
        await stream.open(5.0)
        try:
            await body(stream, core, service)
        finally:
            stream.close()
    run(on_stream)


def _put(key: bytes) -> spb.PutRequest:
    return spb.PutRequest(put=pb.PutRequest(key=key, value=b"v"))


async def _outcome(coro):
    try:
        return (await coro).put.header.revision
    except EtcdError as err:
        return err.message


async def _until(check, timeout: float = 5.0) -> None:
    async with asyncio.timeout(timeout):
        while not check():
            await asyncio.sleep(0.005)


def test_writes_sent_together_share_messages_and_each_gets_its_own_answer():
    async def body(stream, core, service):
        keys = [b"/k%d" % rev for rev in range(10, 30)] + [b"/lease"]
        calls = [asyncio.ensure_future(_outcome(stream.write("put", _put(k)))) for k in keys]
        await _until(lambda: core.arrived == len(keys))
        core.gate.set()  # every answer is ready at once
        got = await asyncio.wait_for(asyncio.gather(*calls), 5.0)
        assert got == [*range(10, 30), errors.LEASE_NOT_FOUND.message]
        assert sum(service.carried_in) == len(keys) and sum(service.carried_out) == len(keys)
        assert len(service.carried_in) < len(keys) / 2, service.carried_in
        assert len(service.carried_out) < len(keys) / 2, service.carried_out
        # one at a time: a message each, answered
        assert await _outcome(stream.write("put", _put(b"/k99"))) == 99
        assert service.carried_in[-1] == 1 and service.carried_out[-1] == 1
    run_stream(body)


def test_writes_arriving_while_a_message_is_answered_share_the_next_one():
    async def body(stream, core, service):
        first = asyncio.ensure_future(_outcome(stream.write("put", _put(b"/k10"))))
        await _until(lambda: core.arrived == 1)  # a lone write goes at once
        later = []
        for rev in range(11, 21):  # one by one, each in an event-loop turn of its own
            later.append(asyncio.ensure_future(_outcome(stream.write("put", _put(b"/k%d" % rev)))))
            await asyncio.sleep(0.01)
        assert service.carried_in == [1] and core.arrived == 1  # held back by /k10's message
        core.gate.set()
        assert await asyncio.wait_for(asyncio.gather(first, *later), 5.0) == list(range(10, 21))
        assert service.carried_in == [1, 10], service.carried_in
    run_stream(body, hold_s=30.0)  # the answer, not the hold's end, lets the next message go


def test_a_write_left_unanswered_holds_the_next_message_back_hold_s_only():
    async def body(stream, core, service):
        first = asyncio.ensure_future(_outcome(stream.write("put", _put(b"/k10"))))
        await _until(lambda: core.arrived == 1)
        started = asyncio.get_running_loop().time()
        second = asyncio.ensure_future(_outcome(stream.write("put", _put(b"/k11"))))
        await _until(lambda: core.arrived == 2)  # /k10 still unanswered
        waited = asyncio.get_running_loop().time() - started
        assert 0.15 <= waited < 2.0, waited
        assert service.carried_in == [1, 1]
        core.gate.set()
        assert await asyncio.wait_for(asyncio.gather(first, second), 5.0) == [10, 11]
    run_stream(body, hold_s=0.2)


def test_large_writes_sent_together_are_split_into_messages_the_server_accepts():
    """The service refuses a message over its limit (grpc.aio's default 4 MiB here, the shard
    service's --max-request-bytes there); writes that would not fit one message share several."""
    async def body(stream, core, service):
        core.gate.set()
        big = b"x" * (1 << 20)
        calls = [stream.write("put", spb.PutRequest(put=pb.PutRequest(key=b"/k%d" % rev, value=big)))
                 for rev in range(10, 16)]
        got = await asyncio.wait_for(asyncio.gather(*map(_outcome, calls)), 10.0)
        assert got == list(range(10, 16)), got
        assert sum(service.carried_in) == 6 and max(service.carried_in) <= 2, service.carried_in
    run_stream(body)


def test_the_single_message_writes_stream_is_still_served():
    async def body(stream, core, service):
        core.gate.set()
        got = await asyncio.wait_for(asyncio.gather(*(_outcome(stream.write("put", _put(b"/k%d" % r)))
                                                      for r in (5, 6, 7))), 5.0)
        assert got == [5, 6, 7] and service.carried_in == []
    run_stream(body, kind=SingleWrites)
